"""Tests of curvsketch.experiments.training: determinism, checkpoints, resuming, errors."""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from curvsketch.experiments.data import mnist16, synthetic_classification
from curvsketch.experiments.models import mlp, paper_mlp
from curvsketch.experiments.training import TrainLog, batch_indices, evaluate, train


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny nets train faster single-threaded on a loaded 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def small():
    """A 500-sample slice of the paper's 16x16 MNIST (train) and 200 test digits."""
    train_split, test_split = mnist16(50, 20)
    return train_split, test_split


def _equal_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _run(data, steps, **kwargs):
    model = paper_mlp(seed=0)
    options = {"lr": 0.3, "batch_size": 100, "seed": 0, "progress": False, **kwargs}
    return model, train(model, data, steps=steps, **options)


def test_sgd_learns_and_logs(small):
    train_split, test_split = small
    model, log = _run(train_split, 60, checkpoint_steps=[30], eval_data=test_split)
    assert log.steps == list(range(60)) and len(log.losses) == len(log.accuracies) == 60
    assert sorted(log.checkpoints) == [0, 30, 60] and log.eval_steps == [0, 30, 60]
    assert log.eval_losses[-1] < log.eval_losses[0] and log.eval_accuracies[-1] > 0.25
    assert sum(log.losses[-10:]) < sum(log.losses[:10])
    assert log.settings == {
        "lr": 0.3,
        "batch_size": 100,
        "seed": 0,
        "n_train": 500,
        "num_parameters": 7030,
    }
    assert (log.eval_losses[-1], log.eval_accuracies[-1]) == evaluate(model, test_split)
    assert model.training


def test_deterministic_and_checkpoints_are_copies(small):
    train_split, _ = small
    initial = paper_mlp(seed=0).state_dict()
    model_a, log_a = _run(train_split, 25, checkpoint_steps=[10])
    model_b, log_b = _run(train_split, 25, checkpoint_steps=[10])
    assert log_a.losses == log_b.losses
    assert _equal_states(model_a.state_dict(), model_b.state_dict())
    assert _equal_states(log_a.state_dict(0), initial)
    assert _equal_states(log_a.state_dict(25), model_a.state_dict())
    _, log_10 = _run(train_split, 10)
    assert _equal_states(log_a.state_dict(10), log_10.state_dict(10))
    _, log_c = _run(train_split, 25, seed=1)
    assert log_c.losses != log_a.losses
    with pytest.raises(KeyError, match="no checkpoint at step 11"):
        log_a.state_dict(11)


def test_batch_order_covers_each_epoch():
    epoch = torch.cat([batch_indices(100, 25, 0, t) for t in range(4, 8)])
    assert sorted(epoch.tolist()) == list(range(100))
    assert not torch.equal(batch_indices(100, 25, 0, 0), batch_indices(100, 25, 0, 4))
    assert batch_indices(103, 25, 0, 3).numel() == 25  # remainder skipped


def test_resume_equals_uninterrupted_and_skips_done_work(small, tmp_path):
    train_split, test_split = small
    _, full = _run(train_split, 40, checkpoint_steps=[10, 20, 30], eval_data=test_split)
    directory = tmp_path / "run"
    _run(train_split, 20, checkpoint_steps=[10], eval_data=test_split, checkpoint_dir=directory)
    seen = []
    model = paper_mlp(seed=99)  # another init: the checkpoint must overwrite it
    log = train(
        model,
        train_split,
        steps=40,
        lr=0.3,
        batch_size=100,
        seed=0,
        eval_data=test_split,
        checkpoint_steps=[10, 30],
        checkpoint_dir=directory,
        progress=False,
        callback=lambda t, m, lg: seen.append(t),
    )
    assert seen == list(range(21, 41))
    assert log.losses == full.losses and log.eval_losses == full.eval_losses
    assert _equal_states(model.state_dict(), full.state_dict(40))
    assert all(isinstance(p, type(directory)) for p in log.checkpoints.values())
    assert _equal_states(log.state_dict(30), full.state_dict(30))
    # everything there: no training at all
    seen.clear()

    def record(t, model, log):
        seen.append(t)

    again = train(
        paper_mlp(seed=5),
        train_split,
        steps=40,
        lr=0.3,
        batch_size=100,
        checkpoint_dir=directory,
        progress=False,
        callback=record,
    )
    assert seen == [] and again.losses == full.losses
    # a new earlier checkpoint is recomputed from the one before it
    again = train(
        paper_mlp(seed=5),
        train_split,
        steps=40,
        lr=0.3,
        batch_size=100,
        checkpoint_steps=[15],
        checkpoint_dir=directory,
        progress=False,
        callback=lambda t, m, lg: seen.append(t),
    )
    assert seen == list(range(11, 41))
    _, log_15 = _run(train_split, 15)
    assert _equal_states(again.state_dict(15), log_15.state_dict(15))
    assert TrainLog.load(directory).losses == full.losses
    with pytest.raises(ValueError, match=r"lr: saved 0\.3 vs now 0\.1.*another checkpoint_dir"):
        train(paper_mlp(), train_split, steps=40, lr=0.1, batch_size=100, checkpoint_dir=directory)


def test_dropout_runs_resume_exactly(tmp_path):
    inputs, labels = synthetic_classification(64, (8,), 4, seed=0)

    def model():
        return nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Tanh(), nn.Linear(16, 4))

    def run(steps, **kwargs):
        torch.manual_seed(0)
        net = model()
        state = torch.get_rng_state()
        train(net, (inputs, labels), steps=steps, lr=0.1, batch_size=16, progress=False, **kwargs)
        assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
        return net

    full = run(12)
    run(5, checkpoint_dir=tmp_path)
    resumed = run(12, checkpoint_dir=tmp_path)
    assert _equal_states(full.state_dict(), resumed.state_dict())
    assert not _equal_states(full.state_dict(), run(12, seed=1).state_dict())


def test_dataset_input_matches_tensors():
    inputs, labels = synthetic_classification(60, (8,), 3, seed=1)
    nets = [mlp([8, 6, 3], seed=0) for _ in range(2)]
    log_t = train(nets[0], (inputs, labels), steps=8, lr=0.2, batch_size=20, progress=False)
    log_d = train(
        nets[1],
        TensorDataset(inputs, labels),
        steps=8,
        lr=0.2,
        batch_size=20,
        progress=False,
        eval_data=TensorDataset(inputs, labels),
    )
    torch.testing.assert_close(torch.tensor(log_t.losses), torch.tensor(log_d.losses))
    assert len(log_d.eval_steps) == 2


def test_non_finite_loss_names_the_step():
    inputs, labels = synthetic_classification(40, (4,), 2, seed=0)
    inputs[7, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"at step \d+ \(lr=0\.1\); lower the learning"):
        train(mlp([4, 2]), (inputs, labels), steps=10, lr=0.1, batch_size=40, progress=False)
    clean = synthetic_classification(40, (4,), 2, seed=0)
    with pytest.raises(FloatingPointError, match="at step"):
        train(
            mlp([4, 8, 2], "identity", seed=0),
            clean,
            steps=50,
            lr=1e19,
            batch_size=20,
            progress=False,
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": -1}, "steps must be >= 0"),
        ({"lr": 0.0}, "lr must be a positive"),
        ({"batch_size": 41}, r"batch_size must be in \[1, 40\]"),
        ({"checkpoint_steps": [11]}, r"checkpoint_steps must lie in \[0, steps=10\]"),
        ({"log_every": 0}, "log_every"),
    ],
)
def test_bad_arguments(kwargs, match):
    data = synthetic_classification(40, (4,), 2)
    options = {"steps": 10, "lr": 0.1, "batch_size": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        train(mlp([4, 2]), data, **options)


def test_progress_line(capsys):
    data = synthetic_classification(40, (4,), 2)
    train(mlp([4, 2]), data, steps=10, lr=0.1, batch_size=10, log_every=5)
    err = capsys.readouterr().err
    assert "train: 5/10" in err and "train: 10/10" in err and "steps/s" in err
    assert "loss " in err
    train(mlp([4, 2]), data, steps=10, lr=0.1, batch_size=10, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_paper_mnist_run_learns():
    """The paper's MNIST setting, 1000 steps (about 1-3 s unloaded; timing not asserted)."""
    train_split, test_split = mnist16()
    model = paper_mlp(seed=0)
    log = train(
        model,
        train_split,
        steps=1000,
        lr=0.3,
        batch_size=500,
        eval_data=test_split,
        checkpoint_steps=range(0, 1001, 100),
        progress=False,
    )
    assert log.eval_accuracies[-1] > 0.85 and log.eval_losses[-1] < 0.5
