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
    model = paper_mlp(seed=0)  # the checkpoint must overwrite it
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
        paper_mlp(seed=0),
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
        paper_mlp(seed=0),
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


# ---------------------------------------------------------------- reruns and faults (issue 14)


def _tiny(seed=0):
    return synthetic_classification(48, (4,), 2, seed=seed)


def _fit(directory, model=None, data=None, steps=10, **kwargs):
    options = {"lr": 0.2, "batch_size": 16, "checkpoint_steps": [5], "progress": False}
    model = model if model is not None else mlp([4, 8, 2], seed=0)
    log = train(model, data or _tiny(), steps=steps, checkpoint_dir=directory, **options, **kwargs)
    return model, log


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model": lambda: mlp([4, 8, 2], seed=1)}, "initial_state"),
        ({"model": lambda: mlp([4, 8, 2], "relu", seed=0)}, "architecture"),
        ({"data": lambda: _tiny(seed=1)}, "train_data"),
        ({"loss_fn": lambda: nn.CrossEntropyLoss(label_smoothing=0.2)}, "probe_loss"),
    ],
)
def test_resume_refuses_a_folder_trained_with_other_weights_data_or_loss(tmp_path, change, named):
    """model seed, activation (same shapes), data and loss all change the weights."""
    _fit(tmp_path)
    kwargs = {k: make() for k, make in change.items()}
    with pytest.raises(ValueError, match=rf"holds a run with other settings \(.*{named}: saved"):
        _fit(tmp_path, **kwargs)


def test_checkpoint_claiming_another_step_is_recomputed(tmp_path, capsys):
    reference_model, reference = _fit(tmp_path / "ref")
    _fit(tmp_path / "run")
    (tmp_path / "run" / "step_00000010.pt").write_bytes(
        (tmp_path / "run" / "step_00000005.pt").read_bytes()
    )
    seen = []
    model, log = _fit(tmp_path / "run", callback=lambda t, m, lg: seen.append(t))
    assert "claims step 5" in capsys.readouterr().err
    assert seen == list(range(6, 11))  # recomputed from the valid step-5 checkpoint
    assert _equal_states(log.state_dict(10), reference.state_dict(10))
    assert _equal_states(model.state_dict(), reference_model.state_dict())
    with pytest.raises(ValueError, match="claims step 5, not step 10"):
        TrainLog(checkpoints={10: tmp_path / "run" / "step_00000005.pt"}).state_dict(10)


@pytest.mark.parametrize("garbage", [b"", b"\x00\x01 not a zip", b"PK\x03\x04truncated"])
def test_corrupt_checkpoint_is_treated_as_missing(tmp_path, capsys, garbage):
    _, reference = _fit(tmp_path / "ref")
    _fit(tmp_path / "run")
    (tmp_path / "run" / "step_00000010.pt").write_bytes(garbage)
    _, log = _fit(tmp_path / "run")
    err = capsys.readouterr().err
    assert "step_00000010.pt: unreadable" in err and "recomputing it" in err
    assert _equal_states(log.state_dict(10), reference.state_dict(10))


@pytest.mark.parametrize("garbage", ["", '{"settings": {"lr"', "garbage", "[1, 2]"])
def test_corrupt_log_is_treated_as_missing(tmp_path, capsys, garbage):
    _, reference = _fit(tmp_path / "ref")
    _fit(tmp_path / "run")
    (tmp_path / "run" / "train_log.json").write_text(garbage)
    seen = []
    _, log = _fit(tmp_path / "run", callback=lambda t, m, lg: seen.append(t))
    assert "train_log.json" in capsys.readouterr().err and seen == list(range(11))
    assert log.losses == reference.losses
    assert TrainLog.load(tmp_path / "run").losses == reference.losses
    (tmp_path / "run" / "train_log.json").write_text(garbage)
    with pytest.raises(ValueError, match=r"train_log\.json"):
        TrainLog.load(tmp_path / "run")


def test_exploding_loss_is_reported_with_step_and_lr():
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(32, 4, generator=g), torch.randint(0, 2, (32,), generator=g))

    def squared(out, t):
        return ((out - nn.functional.one_hot(t, 2).to(out.dtype)) ** 2).mean()

    torch.manual_seed(0)
    options = {"steps": 10, "batch_size": 32, "progress": False, "loss_fn": squared}
    # losses 0.92, 7.65, 121.6, ...: step 2 is over 100 x the loss at step 0
    with pytest.raises(
        ValueError, match=r"loss is 121\.6.*at step 2 \(lr=3\.0\); lower the learning"
    ):
        train(nn.Linear(4, 2), data, lr=3.0, **options)
    torch.manual_seed(0)
    train(nn.Linear(4, 2), data, lr=0.1, **options)  # a stable lr trains


def test_non_finite_loss_is_a_value_error_for_the_cli(tmp_path):
    inputs, labels = synthetic_classification(40, (4,), 2, seed=0)
    inputs[7, 0] = float("nan")
    with pytest.raises(ValueError, match=r"diverged.*at step 0 \(lr=0\.1\)"):
        train(mlp([4, 2]), (inputs, labels), steps=10, lr=0.1, batch_size=40, progress=False)


def test_full_disk_while_checkpointing_loses_nothing(tmp_path, monkeypatch):
    import errno

    _, reference = _fit(tmp_path / "ref")
    real_save, calls = torch.save, []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the checkpoint of step 5
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(ValueError, match=r"step_00000005\.pt: the disk is full.*free space"):
        _fit(tmp_path / "run")
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "step_00000000.pt",
        "train_log.json",
    ]  # no temporary file left behind
    seen = []
    _, log = _fit(tmp_path / "run", callback=lambda t, m, lg: seen.append(t))
    assert seen == list(range(1, 11))  # resumed from step 0
    assert log.losses == reference.losses


def test_checkpoint_dir_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ValueError, match=r"taken is a file, not a folder; pass another"):
        _fit(tmp_path / "taken")
