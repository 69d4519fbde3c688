"""Checks before training (experiments/preflight.py): model against data, sizes against D."""

from __future__ import annotations

import pytest
import torch

from curvsketch.experiments.config import ConfigError, config_from_dict
from curvsketch.experiments.data import mnist16, sklearn_digits, synthetic_classification
from curvsketch.experiments.models import build_model
from curvsketch.experiments.preflight import (
    check_memory_budget,
    check_output_file,
    check_study,
    check_workers,
    data_facts,
)

TINY = {
    "data": {"name": "digits", "n_test_per_class": 20, "hessian_per_class": 8},
    "model": {"name": "mlp", "kwargs": {"sizes": [64, 6, 10]}},
    "train": {"steps": 2, "lr": 0.1, "batch_size": 64},
    "hessian": {"steps": [0, 2], "splits": ["test"], "exact": "false"},
    "sketch": {"outer": 20, "inner": 40, "error_tests": 3},
    "analysis": {"ks": [5, 20], "main_k": 20, "rhos": [0.02], "stability_ks": [5]},
}
D_TINY = 64 * 6 + 6 + 6 * 10 + 10


def tiny(**sections):
    return config_from_dict({**TINY, **{k: {**TINY.get(k, {}), **v} for k, v in sections.items()}})


def test_a_valid_study_passes_and_the_model_is_left_as_it_was():
    config = tiny()
    model = build_model("mlp", sizes=[64, 6, 10], seed=0)
    before = [p.clone() for p in model.parameters()]
    assert check_study(config) == D_TINY
    assert check_study(config, model) == D_TINY
    assert model.training  # the forward ran in eval mode, the mode is restored
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(
    ("name", "load"),
    [
        ("mnist16", lambda d: mnist16(d.n_train_per_class, d.n_test_per_class, seed=d.seed)),
        ("digits", lambda d: sklearn_digits(d.n_test_per_class, seed=d.seed)),
        (
            "synthetic",
            lambda d: (
                synthetic_classification(d.num_samples, d.input_shape, d.num_classes),
                synthetic_classification(
                    max(d.num_samples // 4, d.num_classes), d.input_shape, d.num_classes
                ),
            ),
        ),
    ],
)
def test_data_facts_match_the_loaded_data(name, load):
    """What preflight assumes without loading is what the loaders return."""
    d = config_from_dict(
        {
            "data": {
                "name": name,
                "n_train_per_class": 30,
                "n_test_per_class": 7,
                "num_samples": 203,
                "num_classes": 7,
                "input_shape": [3, 5],
            }
        }
    ).data
    facts = data_facts(d)
    train, test = load(d)
    assert facts.input_shape == tuple(train.inputs.shape[1:])
    assert facts.num_classes == len(torch.unique(train.targets))
    assert facts.train_size == train.targets.numel()
    for split, data in (("train", train), ("test", test)):
        counts = torch.unique(data.targets, return_counts=True)[1]
        assert facts.per_class[split][0] == int(counts.min())


def test_real_inputs_are_checked_when_given():
    config = tiny()
    with pytest.raises(ConfigError, match=r"shape \(3, 8, 8\).*sizes to 192"):
        check_study(config, inputs=torch.zeros(5, 3, 8, 8))


def test_sizes_are_checked_against_min_of_outer_and_D():
    # outer above D: only D eigenpairs exist, so k = 500 cannot be reported
    config = tiny(sketch={"outer": 600, "inner": 1200}, analysis={"ks": [5, 500], "main_k": 5})
    with pytest.raises(ConfigError, match=r"analysis\.ks.*\[500\].*D = 460"):
        check_study(config)
    ok = tiny(sketch={"outer": 600, "inner": 1200}, analysis={"ks": [5, 460], "main_k": 5})
    assert check_study(ok) == D_TINY
    # a measure-only check ignores [analysis]
    bad_rho = tiny(analysis={"rhos": [0.5]})
    with pytest.raises(ConfigError, match=r"ρ = 0\.5 needs k = round\(ρ·D\) = 230"):
        check_study(bad_rho)
    assert check_study(bad_rho, analysis=False) == D_TINY


def test_folder_data_needs_an_existing_root(tmp_path):
    analysis = {**TINY["analysis"], "rhos": [0.00002]}  # k = 18 of D = 895,210
    base = {**TINY, "model": {"name": "deepobs_3c3d"}, "analysis": analysis}
    with pytest.raises(ConfigError, match=r"set data\.root.*cifar-10-batches-py"):
        check_study(config_from_dict({**base, "data": {"name": "cifar10"}}))
    missing = {"name": "cifar10", "root": str(tmp_path / "nowhere")}
    with pytest.raises(ConfigError, match=r"data\.root = .*nowhere.* is not a folder"):
        check_study(config_from_dict({**base, "data": missing}))
    there = {"name": "cifar10", "root": str(tmp_path)}
    assert check_study(config_from_dict({**base, "data": there})) == 895_210
    # a dense 895,210² reference (3.2 TB) is refused before training, not after
    exact = {**base, "data": there, "hessian": {**TINY["hessian"], "exact": "true"}}
    with pytest.raises(ConfigError, match=r"hessian\.exact = 'true' builds the dense .* GB"):
        check_study(config_from_dict(exact))


def test_flag_checks(tmp_path):
    assert check_memory_budget(None) is None and check_memory_budget(10) == 10
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="--memory-budget"):
            check_memory_budget(bad)
    assert check_output_file(tmp_path / "x.pt") == tmp_path / "x.pt"
    (tmp_path / "file").write_text("")
    for bad, words in (
        (tmp_path, "is a folder"),
        (tmp_path / "a" / "x.pt", "does not exist"),
        (tmp_path / "file" / "x.pt", "is a file"),
    ):
        with pytest.raises(ValueError, match=words):
            check_output_file(bad)
    check_workers(1, 2)
    with pytest.raises(ValueError, match="--of 0"):
        check_workers(0, 0)
    with pytest.raises(ValueError, match="--worker -1"):
        check_workers(-1, 2)
