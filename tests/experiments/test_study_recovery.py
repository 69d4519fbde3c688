"""``[sketch] recovery = "krylov"`` / ``"hmt"`` and ``which`` through the study (issue 15, item 6).

The mini study of ``test_pipeline.py`` (bundled 8x8 digits, a 235-parameter MLP, 4 SGD
steps, the test split only), run end to end with each Ritz recovery; the sketched
eigenvalues are checked against a dense float64 ``eigvalsh`` of the same Hessian.
"""

from __future__ import annotations

import json

import pytest
import torch

from curvsketch.cli.distributed import build_operator
from curvsketch.cli.main import main
from curvsketch.experiments.config import ConfigError, config_from_dict
from curvsketch.experiments.pipeline import run_study
from curvsketch.experiments.schema import validate_results
from curvsketch.operators import dense_matrix

MINI = {
    "name": "mini",
    "data": {"name": "digits", "n_test_per_class": 5, "hessian_per_class": 2},
    "model": {"name": "mlp", "kwargs": {"sizes": [64, 3, 10]}},
    "train": {"steps": 4, "lr": 0.1, "batch_size": 32},
    "hessian": {"steps": [4], "splits": ["test"], "exact": "false", "engine": "graph"},
    "sketch": {"outer": 8, "inner": 16, "error_tests": 2},
    "analysis": {
        "ks": [2, 4],
        "main_k": 4,
        "rhos": [0.01],
        "stability_ks": [2],
        "random_draws": 2,
        "scores": ["magnitude"],
        "trace_products": 0,
        "density_probes": 0,
    },
}
D_MINI = 64 * 3 + 3 + 3 * 10 + 10


def _config(**sketch):
    raw = {**MINI, "sketch": {**MINI["sketch"], **sketch}}
    return config_from_dict(raw)


def _dense_spectrum(config, out):
    """All eigenvalues (ascending) of the study's Hessian at step 4, dense float64."""
    op = build_operator(config, "test", str(out / "checkpoints" / "step_00000004.pt"))
    H = dense_matrix(op)
    return torch.linalg.eigvalsh((H + H.T) / 2)


def _run(config, out):
    results = run_study(config, out, progress=False, figures=False)
    on_disk = json.loads((out / "results.json").read_text())
    validate_results(on_disk)
    (analysis,) = on_disk["analyses"]
    return results, on_disk, analysis


@pytest.mark.parametrize(
    ("sketch", "products"),
    [
        ({"recovery": "krylov", "inner": 120, "block_size": 8}, 120),
        ({"recovery": "hmt", "power_iters": 1}, 8 * 3),
    ],
    ids=["krylov", "hmt"],
)
def test_ritz_recoveries_run_the_study_and_are_recorded(tmp_path, sketch, products):
    config = _config(**sketch)
    _, on_disk, a = _run(config, tmp_path)
    recorded = on_disk["settings"]["sketch"]
    assert recorded["recovery"] == sketch["recovery"] and recorded["which"] == "LM"
    assert recorded["power_iters"] == sketch.get("power_iters", 0)
    assert a["num_products"] == products and a["outer"] == 8
    exact = _dense_spectrum(config, tmp_path)
    top = exact[exact.abs().argsort(descending=True)][:8]
    got = torch.tensor(a["eigenvalues"]["sketched"], dtype=torch.float64)
    # largest |λ| first, each near an exact eigenvalue of the same sign
    assert torch.all(got.abs()[:-1] >= got.abs()[1:])
    if sketch["recovery"] == "krylov":  # a 120-column Krylov basis of a 235-dim operator
        assert torch.allclose(got, top, rtol=1e-8, atol=1e-10 * float(top.abs().max()))
    else:  # one power iteration: the top eigenvalue within 10 %, Ritz values inside
        assert abs(float(got[0] - top[0])) <= 0.1 * abs(float(top[0]))
        assert float(exact.min()) - 1e-9 <= float(got.min())
        assert float(got.max()) <= float(exact.max()) + 1e-9


def test_which_sa_finds_the_most_negative_curvature(tmp_path):
    config = _config(recovery="krylov", inner=160, block_size=8, which="SA")
    _, on_disk, a = _run(config, tmp_path)
    assert on_disk["settings"]["sketch"]["which"] == "SA"
    exact = _dense_spectrum(config, tmp_path)
    assert float(exact[0]) < 0  # the mini Hessian has negative curvature to find
    got = torch.tensor(a["eigenvalues"]["sketched"], dtype=torch.float64)
    assert torch.all(got[:-1] <= got[1:])  # ascending: the most negative first
    assert torch.allclose(got, exact[:8], rtol=1e-6, atol=1e-8 * float(exact.abs().max()))


BAD_WHICH = {
    "unknown": ({"recovery": "krylov", "which": "SM"}, ["sketch.which = 'SM'", "'LM'", "'SA'"]),
    "lowercase": (
        {"recovery": "krylov", "which": "sa"},
        ["sketch.which = 'sa'", "did you mean 'SA'"],
    ),
    "singlepass": ({"which": "SA"}, ["sketch.which = 'SA'", "'krylov' or 'hmt'", "'LM'"]),
    "nystrom": ({"recovery": "nystrom", "which": "LA"}, ["sketch.recovery = 'nystrom'"]),
    "not_a_string": ({"recovery": "krylov", "which": 1}, ["sketch.which = 1", "string"]),
}


@pytest.mark.parametrize(("sketch", "words"), BAD_WHICH.values(), ids=BAD_WHICH.keys())
def test_bad_which_is_refused_when_loaded(sketch, words):
    with pytest.raises(ConfigError) as exc:
        _config(**sketch)
    for word in words:
        assert word in str(exc.value)


def _toml(tmp_path, sketch_lines: str, exact: str = '"false"'):
    if "inner" not in sketch_lines:
        sketch_lines += "\ninner = 16"
    text = (
        '[data]\nname = "digits"\nn_test_per_class = 5\nhessian_per_class = 2\n'
        '[model]\nname = "mlp"\nkwargs = { sizes = [64, 3, 10] }\n'
        "[train]\nsteps = 4\nlr = 0.1\nbatch_size = 32\n"
        f'[hessian]\nsteps = [4]\nsplits = ["test"]\nexact = {exact}\n'
        f"[sketch]\nouter = 8\nerror_tests = 2\n{sketch_lines}\n"
        "[analysis]\nks = [2, 4]\nmain_k = 4\nrhos = [0.01]\nstability_ks = [2]\n"
        'scores = ["magnitude"]\n'
    )
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("sketch_lines", "exact", "words"),
    [
        ('which = "SA"', '"false"', ["sketch.which = 'SA'", "sketch.recovery = 'singlepass'"]),
        ('recovery = "krylov"\nwhich = "XX"', '"false"', ["sketch.which = 'XX'"]),
        # the exact reference is top-|λ|: not comparable with the SA eigenpairs
        ('recovery = "krylov"\nwhich = "SA"', '"auto"', ["hessian.exact = 'auto'", "'false'"]),
        ('recovery = "hmt"\nwhich = "LA"', '"true"', ["hessian.exact = 'true'"]),
        # make_plan's Krylov rule, in the configuration's key names (D = 235)
        (
            'recovery = "krylov"\ninner = 235\nblock_size = 64',
            '"false"',
            ["sketch.inner = 235", "sketch.block_size = 64", "D = 235"],
        ),
    ],
    ids=["which_singlepass", "which_unknown", "which_with_auto_exact", "which_exact", "krylov"],
)
def test_the_run_command_refuses_before_training(tmp_path, capsys, sketch_lines, exact, words):
    out = tmp_path / "out"
    assert main(["run", str(_toml(tmp_path, sketch_lines, exact)), "--out", str(out)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("curvsketch: error: "), err
    for word in words:
        assert word in err[0]
    assert not (out / "checkpoints").exists()  # nothing trained


# ------------------------------------------- the work of `curvsketch spectrum` (experiments)


def test_spectrum_job_follows_which_and_names_its_arguments():
    from curvsketch.experiments.spectrum import compute_spectrum, prepare_spectrum

    config = _config(recovery="krylov", inner=160, block_size=8, which="SA")
    job = prepare_spectrum(config, top=5, trace_products=0, density_probes=0)
    assert (job.dim, job.plan.outer, job.plan.which, job.top) == (D_MINI, 8, "SA", 5)
    op = build_operator(config, "test")  # the untrained model
    report = compute_spectrum(op, job, progress=False)
    H = dense_matrix(op)
    exact = torch.linalg.eigvalsh((H + H.T) / 2)[:5]
    assert torch.allclose(report.values, exact, rtol=1e-6, atol=1e-8 * float(exact.abs().max()))
    assert report.estimates.trace is None and report.estimates.density is None
    with pytest.raises(ValueError, match=r"top=9 exceeds the 8 eigenpairs"):
        prepare_spectrum(config, top=9)
    with pytest.raises(ValueError, match=r"--trace-method 'exact' is not a trace estimator"):
        prepare_spectrum(config, trace_method="Exact", flags={"trace_method": "--trace-method"})
