"""The study pipeline end to end on a tiny configuration (bundled 8x8 digits, small MLP)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from curvsketch.experiments.config import config_from_dict
from curvsketch.experiments.pipeline import run_study
from curvsketch.experiments.schema import SchemaError, validate_results

TINY = {
    "name": "tiny",
    "data": {"name": "digits", "n_test_per_class": 20, "hessian_per_class": 8},
    "model": {"name": "mlp", "kwargs": {"sizes": [64, 6, 10]}},
    "train": {"steps": 30, "lr": 0.1, "batch_size": 64},
    "hessian": {"steps": [0, 30], "splits": ["train", "test"], "exact_dtype": "float64"},
    "sketch": {"outer": 40, "inner": 80, "error_tests": 10},
    "analysis": {
        "ks": [5, 20, 40],
        "main_k": 20,
        "rhos": [0.02, 0.05],
        "stability_ks": [5, 20],
        "random_draws": 4,
    },
}
D_TINY = 64 * 6 + 6 + 6 * 10 + 10


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return run_study(config_from_dict(TINY), out, progress=False), out


def test_outputs_follow_the_schema(tiny_run):
    _, out = tiny_run
    on_disk = json.loads((out / "results.json").read_text())
    validate_results(on_disk)
    assert on_disk["model"]["num_params"] == D_TINY
    assert len(on_disk["analyses"]) == 4
    assert {a["split"] for a in on_disk["analyses"]} == {"train", "test"}
    assert sorted(on_disk["figures"]) == sorted(
        f"figures/{n}"
        for n in (
            "overlap_vs_step.png",
            "overlap_ratio_vs_k.png",
            "mask_study.png",
            "scores.png",
            "metrics_over_training.png",
            "stabilisation.png",
            "spectrum.png",
            "runtime.png",
            "density.png",
        )
    )
    for f in on_disk["figures"]:
        assert (out / f).stat().st_size > 5_000
    arrays = np.load(out / "arrays.npz")
    assert arrays["test/step_30/curve_magnitude_sketched"].shape == (40,)
    assert on_disk["schema_version"] == 2


def test_trace_and_density_are_recorded(tiny_run):
    """Issue 16, item 4: trace ± standard error and the SLQ density per step and split."""
    _, out = tiny_run
    on_disk = json.loads((out / "results.json").read_text())
    arrays = np.load(out / "arrays.npz")
    for a in on_disk["analyses"]:
        tr, de, where = a["trace"], a["density"], f"{a['split']}/step_{a['step']}"
        # singlepass eigenvalues are not Rayleigh quotients: nothing is deflated
        assert (tr["method"], tr["num_products"], tr["deflated"]) == ("xtrace", 60, 0)
        assert abs(tr["value"] - tr["exact"]) < 3 * tr["standard_error"], tr
        assert (de["num_probes"], de["lanczos_steps"], de["deflated"]) == (8, 40, 0)
        assert a["products"] == {
            "sketch": a["num_products"],
            "aposteriori": 10,
            "trace": 60,
            "density": 8 * 40,
            "ggn_diag": 100,
        }
        assert a["timings"]["trace"] > 0 and a["timings"]["density"] > 0
        grid, values = arrays[f"{where}/density_grid"], arrays[f"{where}/density_values"]
        assert grid.shape == values.shape == (de["grid"]["points"],)
        assert (grid[0], grid[-1]) == pytest.approx((de["grid"]["min"], de["grid"]["max"]))
        assert np.trapezoid(values, grid) == pytest.approx(1.0, abs=1e-3)
        nodes, weights = arrays[f"{where}/density_nodes"], arrays[f"{where}/density_weights"]
        assert nodes.shape == weights.shape == (8, 40)
        assert weights.sum(axis=1) == pytest.approx(np.ones(8))
        # the first moment is a Hutchinson estimate of trace/D from 8 probes: right sign
        # and size (its 8-probe standard error is itself too rough for a tight check)
        assert 0 < de["moments"][0]["value"] * D_TINY < 3 * tr["exact"]
        assert de["wasserstein_exact"] < 0.05


def test_exact_overlap_matches_a_dense_recomputation(tiny_run):
    """The exact magnitude overlap at k equals (1/k)‖U_k[S_k]‖² from a fresh eigh."""
    from curvsketch.experiments.data import balanced_subset, sklearn_digits
    from curvsketch.experiments.models import build_model
    from curvsketch.operators import dense_hessian

    results, out = tiny_run
    ckpt = torch.load(out / "checkpoints" / "step_00000030.pt", weights_only=True)["model"]
    model = build_model("mlp", sizes=[64, 6, 10]).double()
    model.load_state_dict(ckpt)
    data = sklearn_digits(20, seed=0)
    idx = balanced_subset(data.test.targets, 8, seed=0)
    H = dense_hessian(
        model,
        torch.nn.functional.cross_entropy,
        (data.test.inputs[idx].double(), data.test.targets[idx]),
    )
    lam, U = torch.linalg.eigh(H)
    U = U[:, lam.abs().argsort(descending=True)]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    rec = next(a for a in results["analyses"] if a["step"] == 30 and a["split"] == "test")
    assert rec["trace"]["exact"] == pytest.approx(float(H.trace()), rel=1e-9)
    for k in (5, 20):
        S = theta.abs().argsort(descending=True)[:k]
        expected = float((U[S, :k] ** 2).sum() / k)
        assert rec["overlap"]["magnitude"]["exact"][str(k)] == pytest.approx(expected, abs=1e-9)
        assert rec["overlap"]["chance"]["any"][str(k)] == pytest.approx(k / D_TINY)


def test_sketch_with_full_rank_equals_exact(tmp_path):
    cfg = config_from_dict(
        {
            **TINY,
            "hessian": {**TINY["hessian"], "steps": [30], "splits": ["test"]},
            "sketch": {"outer": D_TINY, "inner": D_TINY, "error_tests": 5},
        }
    )
    res = run_study(cfg, tmp_path, progress=False, figures=False)
    rec = res["analyses"][0]
    for k in ("5", "20", "40"):
        assert rec["overlap"]["magnitude"]["sketched"][k] == pytest.approx(
            rec["overlap"]["magnitude"]["exact"][k], abs=1e-8
        )
    assert rec["top10_eigenvalue_max_rel_error"] < 1e-8
    assert rec["error"]["relative_error"] < 1e-6


def test_second_run_reuses_finished_steps(tiny_run, tmp_path):
    results, out = tiny_run
    again = run_study(config_from_dict(TINY), out, progress=False, figures=False)
    assert again["reused_analyses"] == 4
    assert again["analyses"] == results["analyses"]
    # another sketch seed is another measurement: nothing is reused
    other = config_from_dict({**TINY, "sketch": {**TINY["sketch"], "seed": 1}})
    assert run_study(other, out, progress=False, figures=False)["reused_analyses"] == 0


def test_schema_validator_rejects_broken_results(tiny_run):
    results, _ = tiny_run
    broken = json.loads(json.dumps(results))
    del broken["analyses"][0]["overlap"]["magnitude"]["sketched"]
    with pytest.raises(SchemaError, match="sketched"):
        validate_results(broken)
    broken = json.loads(json.dumps(results))
    broken["analyses"][1]["overlap"]["best"]["sketched"]["5"] = 1.5
    with pytest.raises(SchemaError, match="outside"):
        validate_results(broken)
    broken = json.loads(json.dumps(results))
    del broken["analyses"][0]["trace"]
    with pytest.raises(SchemaError, match=r"missing key 'trace' \(null when not estimated\)"):
        validate_results(broken)
    broken = json.loads(json.dumps(results))
    broken["analyses"][0]["trace"]["standard_error"] = "small"
    with pytest.raises(SchemaError, match=r"trace\.standard_error: expected a number or null"):
        validate_results(broken)
    broken = json.loads(json.dumps(results))
    broken["analyses"][0]["products"]["density"] = 3
    with pytest.raises(SchemaError, match=r"products\.density must equal density\.num_products"):
        validate_results(broken)
    broken = json.loads(json.dumps(results))
    del broken["analyses"][2]["density"]["moments"]
    with pytest.raises(SchemaError, match=r"density: missing key 'moments'"):
        validate_results(broken)
    broken = json.loads(json.dumps(results))
    broken["schema_version"] = 1
    with pytest.raises(SchemaError, match=r"expected 2, got 1 .*rerun the study"):
        validate_results(broken)


# ---------------------------------------------------------------- reruns and faults (issue 14)

MINI = {
    "name": "mini",
    "data": {"name": "digits", "n_test_per_class": 5, "hessian_per_class": 2},
    "model": {"name": "mlp", "kwargs": {"sizes": [64, 3, 10]}},
    "train": {"steps": 4, "lr": 0.1, "batch_size": 32},
    "hessian": {"steps": [0, 4], "splits": ["test"], "exact": "false", "engine": "graph"},
    "sketch": {"outer": 8, "inner": 16, "error_tests": 2},
    "analysis": {
        "ks": [2, 4],
        "main_k": 4,
        "rhos": [0.01],
        "stability_ks": [2],
        "random_draws": 2,
        "scores": ["magnitude"],
    },
}


def _untimed(analyses):
    return [{k: v for k, v in a.items() if k != "timings"} for a in analyses]


def _mini(**sections):
    return config_from_dict({**MINI, **{k: {**MINI[k], **v} for k, v in sections.items()}})


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini") / "out"
    return run_study(_mini(), out, progress=False, figures=False), out


@pytest.fixture
def mini_copy(mini_run, tmp_path):
    """A private copy of the finished mini study (tests below change or break its files)."""
    import shutil

    results, out = mini_run
    shutil.copytree(out, tmp_path / "out")
    return results, tmp_path / "out"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model": {"seed": 1}}, r"model\.seed: saved 0 vs now 1"),
        (
            {"model": {"kwargs": {"sizes": [64, 3, 10], "activation": "relu"}}},
            r"model\.kwargs: saved \{'sizes': \[64, 3, 10\]\} vs now",
        ),
        ({"data": {"seed": 1}}, r"data\.seed: saved 0 vs now 1"),
        ({"train": {"seed": 1}}, r"train\.seed: saved 0 vs now 1"),
    ],
)
def test_rerun_with_other_weights_is_refused(mini_copy, change, named):
    """Old checkpoints were reused and results claimed the new settings (issue 14, item 5)."""
    _, out = mini_copy
    with pytest.raises(
        ValueError, match=rf"--out {out} holds a study trained with other .*{named}"
    ):
        run_study(_mini(**change), out, progress=False, figures=False)
    with pytest.raises(
        ValueError, match=r"pass another --out, or delete .*checkpoints to retrain there"
    ):
        run_study(_mini(**change), out, progress=False, figures=False)


def test_analyses_with_other_settings_are_kept_side_by_side(mini_copy):
    results, out = mini_copy
    other = run_study(_mini(sketch={"seed": 1}), out, progress=False, figures=False)
    assert other["reused_analyses"] == 0
    assert len(list((out / "steps").glob("*.json"))) == 4
    again = run_study(_mini(), out, progress=False, figures=False)  # nothing was overwritten
    assert again["reused_analyses"] == 2
    assert _untimed(again["analyses"]) == _untimed(results["analyses"])
    # more training steps: the weights at steps 0 and 4 are the same, so are their analyses
    longer = run_study(_mini(train={"steps": 6}), out, progress=False, figures=False)
    assert longer["reused_analyses"] == 2 and longer["analyses"] == results["analyses"]


@pytest.mark.parametrize("suffix", [".json", ".pt"])
@pytest.mark.parametrize("garbage", [b"{", b"\x89garbage"])
def test_corrupt_step_file_is_recomputed(mini_copy, capsys, suffix, garbage):
    results, out = mini_copy
    victim = sorted((out / "steps").glob(f"step_0000004_test_*{suffix}"))[0]
    victim.write_bytes(garbage)
    again = run_study(_mini(), out, progress=False, figures=False)
    assert f"{victim.name}" in capsys.readouterr().err
    assert again["reused_analyses"] == 1
    assert _untimed(again["analyses"]) == _untimed(results["analyses"])
    assert run_study(_mini(), out, progress=False, figures=False)["reused_analyses"] == 2


def test_zero_products_skip_trace_and_density(tmp_path):
    res = run_study(
        _mini(analysis={"trace_products": 0, "density_probes": 0}), tmp_path, progress=False
    )
    validate_results(json.loads((tmp_path / "results.json").read_text()))
    for a in res["analyses"]:
        assert a["trace"] is None and a["density"] is None
        assert set(a["products"]) == {"sketch", "aposteriori"}
        assert "trace" not in a["timings"] and "density" not in a["timings"]
    assert "figures/density.png" not in res["figures"]
    assert not any("density" in name for name in res.arrays)


def test_ritz_recovery_deflates_trace_and_density(tmp_path):
    """hmt keeps Rayleigh-Ritz values: its 8 eigenpairs are deflated from both estimates."""
    cfg = _mini(sketch={"recovery": "hmt"}, hessian={"exact": "true", "steps": [4]})
    res = run_study(cfg, tmp_path, progress=False, figures=False)
    validate_results(json.loads((tmp_path / "results.json").read_text()))
    (a,) = res["analyses"]
    tr = a["trace"]
    assert tr["deflated"] == 8 and a["density"]["deflated"] == 8
    assert abs(tr["value"] - tr["exact"]) < max(3 * tr["standard_error"], 1e-6 * abs(tr["exact"]))
    assert res.arrays["test/step_4/density_spikes"].shape == (8,)


def test_out_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ValueError, match=r"taken is a file, not a folder; pass another --out"):
        run_study(_mini(), tmp_path / "taken", progress=False, figures=False)


def test_full_disk_loses_no_finished_step(mini_run, tmp_path, monkeypatch):
    import errno

    results, _ = mini_run
    out = tmp_path / "out"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full)
    with pytest.raises(ValueError, match=r"arrays\.npz: the disk is full.*free space or pass"):
        run_study(_mini(), out, progress=False, figures=False)
    monkeypatch.undo()
    assert not list(out.glob("*.tmp")) and len(list((out / "steps").glob("*.pt"))) == 2
    again = run_study(_mini(), out, progress=False, figures=False)
    assert again["reused_analyses"] == 2
    assert _untimed(again["analyses"]) == _untimed(results["analyses"])


def test_diverged_training_stops_the_study(tmp_path):
    with pytest.raises(ValueError, match=r"training diverged: .* at step \d+ \(lr=1e\+?30\)"):
        run_study(_mini(train={"lr": 1e30}), tmp_path, progress=False, figures=False)
