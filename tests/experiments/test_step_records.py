"""Typed study records (issue 18, item 2): one operator factory, a frozen step analysis in
three parts, step files that round-trip, and ``results.json`` checked before it is written."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from curvsketch.experiments.config import config_from_dict
from curvsketch.experiments.data import sklearn_digits
from curvsketch.experiments.measure_step import analyse_step
from curvsketch.experiments.models import build_model
from curvsketch.experiments.schema import SchemaError
from curvsketch.experiments.step_records import STEP_FORMAT, StepAnalysis
from curvsketch.experiments.study_files import load_step, save_step, write_results
from curvsketch.experiments.study_operator import hessian_samples, study_operator
from curvsketch.operators import GGNOperator, HessianOperator, dense_hessian

RAW = {
    "name": "records",
    "data": {"name": "digits", "n_test_per_class": 5, "hessian_per_class": 2},
    "model": {"name": "mlp", "kwargs": {"sizes": [64, 3, 10]}},
    "train": {"steps": 2, "lr": 0.1, "batch_size": 32},
    "hessian": {"steps": [0], "splits": ["test"], "exact": "true", "exact_dtype": "float64"},
    "sketch": {"outer": 12, "inner": 24, "error_tests": 4},
    "analysis": {
        "ks": [2, 4, 12, 500],
        "main_k": 4,
        "rhos": [0.02],
        "stability_ks": [4],
        "random_draws": 2,
        "trace_products": 0,
        "density_probes": 0,
        "ggn_diag_probes": 8,
    },
}
D = 64 * 3 + 3 + 3 * 10 + 10


@pytest.fixture(scope="module")
def setup():
    config = config_from_dict(RAW)
    model = build_model("mlp", sizes=[64, 3, 10])
    data = hessian_samples(config, sklearn_digits(5, seed=0).test)
    return config, model, data


@pytest.fixture(scope="module")
def analysed(setup):
    config, model, data = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = analyse_step(config, model, data, step=0, split="test", progress=False)
    return res, before


def test_study_operator_copies_the_model(setup):
    config, model, data = setup
    op = study_operator(config, model, data)
    assert isinstance(op, HessianOperator) and op.dtype == torch.float64
    assert op.model is not model and next(model.parameters()).dtype == torch.float32
    assert not op.model.training
    dense = dense_hessian(op.model, torch.nn.functional.cross_entropy, data)
    probe = torch.eye(D, dtype=torch.float64)[:, :5]
    assert torch.allclose(op @ probe, dense[:, :5], rtol=1e-10, atol=1e-12)
    ggn = study_operator(config, model, data, kind="ggn", dtype="float32")
    assert isinstance(ggn, GGNOperator) and ggn.dtype == torch.float32


def test_study_operator_falls_back_to_auto_for_a_hessian_only_engine(setup):
    config, model, data = setup
    cfg = dataclasses.replace(
        config, hessian=dataclasses.replace(config.hessian, engine="graph_batched")
    )
    assert study_operator(cfg, model, data).engine == "graph_batched"
    assert study_operator(cfg, model, data, kind="ggn").engine == "auto"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"kind": "fisher"}, r"kind='fisher' must be one of"), ({"dtype": "half"}, r"dtype='half'")],
)
def test_study_operator_rejects_bad_arguments(setup, kwargs, match):
    config, model, data = setup
    with pytest.raises(ValueError, match=match):
        study_operator(config, model, data, **kwargs)


def test_analysis_leaves_the_model_alone(setup, analysed):
    _, model, _ = setup
    _, before = analysed
    assert next(model.parameters()).dtype == torch.float32
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_step_analysis_is_frozen_and_typed(analysed):
    res, _ = analysed
    assert isinstance(res, StepAnalysis)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.step = 1  # type: ignore[misc]
    e, o = res.eigen, res.overlap
    assert (e.dim, e.outer) == (D, 12) and list(e.eigenvalues) == ["sketched", "exact"]
    assert e.bases["exact"].shape == (D, 4) and e.bases["exact"].dtype == torch.float32
    assert set(e.eigenvalue_errors) == {10}  # 50 > outer
    assert o.ks == (2, 4, 12)  # 500 > outer is not reported
    assert list(o.curves) == [
        "magnitude",
        "random_mean",
        "random_std",
        "best",
        "gradient",
        "ggn_diag",
        "diag_h2",
    ]
    assert o.curves["best"]["exact"].shape == (12,)
    assert o.at("magnitude", "exact", 4) == pytest.approx(float(o.curves["magnitude"]["exact"][3]))
    assert o.at("magnitude", "exact", 3) is None  # not a reported k
    assert o.chance_at(12) == pytest.approx(12 / D)
    assert res.products == {"sketch": e.num_products, "aposteriori": 4, "ggn_diag": 8}


def test_record_and_arrays(analysed):
    res, _ = analysed
    rec = res.record()
    json.dumps(rec)  # plain JSON
    assert rec["overlap"]["magnitude"]["exact"]["4"] == res.overlap.at("magnitude", "exact", 4)
    assert rec["overlap"]["chance"]["any"] == {"2": 2 / D, "4": 4 / D, "12": 12 / D}
    assert rec["top10_eigenvalue_max_rel_error"] == res.eigen.eigenvalue_errors[10]
    assert rec["eigenvalues"]["exact"] == res.eigen.eigenvalues["exact"].tolist()
    assert rec["trace"] is None and rec["density"] is None
    names = res.named_arrays()
    assert names["curve_diag_h2_sketched"] is res.overlap.curves["diag_h2"]["sketched"]
    assert {"theta_order", "eigenvalues_exact", "curve_chance"} <= set(names)


def test_step_files_round_trip(analysed, tmp_path):
    res, _ = analysed
    save_step(tmp_path, "k", res, "fp")
    again = load_step(tmp_path, "k", "fp", 0, "test")
    assert again is not None and again.record() == res.record()
    for name, arr in res.named_arrays().items():
        assert torch.equal(again.named_arrays()[name], arr), name
    assert torch.equal(again.eigen.bases["sketched"], res.eigen.bases["sketched"])


def test_step_file_of_an_older_format_is_recomputed(analysed, tmp_path, capsys):
    res, _ = analysed
    save_step(tmp_path, "k", res, "fp")
    torch.save({"arrays": {}, "bases": {}}, tmp_path / "k.pt")  # the format before STEP_FORMAT 2
    assert STEP_FORMAT == 2 and load_step(tmp_path, "k", "fp", 0, "test") is None
    assert "written by an older curvsketch; recomputing it" in capsys.readouterr().err


def test_results_are_checked_before_they_are_written(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    with pytest.raises(SchemaError, match="missing key 'schema_version'"):
        write_results(path, {"name": "broken"})
    assert path.read_text() == "old"
