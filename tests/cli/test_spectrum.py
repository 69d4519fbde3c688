"""``curvsketch spectrum``: top eigenvalues, trace and density at a checkpoint of ``run``."""

from __future__ import annotations

import re

import pytest
import torch

from curvsketch import seigh, trace
from curvsketch.cli.distributed import build_operator
from curvsketch.cli.main import main
from curvsketch.experiments.config import load_config
from curvsketch.experiments.pipeline import run_study

MINI_TOML = """
name = "mini"
[data]
name = "digits"
n_test_per_class = 5
hessian_per_class = 2
[model]
name = "mlp"
kwargs = {sizes = [64, 3, 10]}
[train]
steps = 4
lr = 0.1
batch_size = 32
[hessian]
steps = [0, 4]
splits = ["test"]
exact = "false"
engine = "graph"
[sketch]
outer = 8
inner = 16
error_tests = 2
[analysis]
ks = [2, 4]
main_k = 4
rhos = [0.01]
stability_ks = [2]
random_draws = 2
scores = ["magnitude"]
trace_products = 20
density_probes = 3
density_steps = 10
"""
D_MINI = 64 * 3 + 3 + 3 * 10 + 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("spectrum")
    config = root / "mini.toml"
    config.write_text(MINI_TOML)
    run_study(load_config(config), root / "out", progress=False, figures=False)
    return config, root / "out" / "checkpoints" / "step_00000004.pt"


def test_spectrum_prints_eigenvalues_trace_and_density(trained, capsys):
    config, ckpt = trained
    argv = ["spectrum", str(config), "--checkpoint", str(ckpt), "--split", "test", "--quiet"]
    assert main([*argv, "--top", "5", "--trace-products", "30", "--bins", "6"]) == 0
    out = capsys.readouterr().out
    assert f"D = {D_MINI}" in out and str(ckpt) in out
    # the same operator and sketch, computed here: the printed numbers are theirs
    cfg = load_config(config)
    op = build_operator(cfg, "test", str(ckpt))
    res = seigh(op, 8, 16, noise=cfg.sketch.noise, seed=cfg.sketch.seed)
    printed = re.findall(r"^\s+(\d+)\s+(\S+)$", out.split("trace:")[0], re.M)
    assert [int(i) for i, _ in printed] == [1, 2, 3, 4, 5]
    assert [float(v) for _, v in printed] == pytest.approx(res.eigenvalues[:5].tolist(), rel=1e-5)
    est = trace(op, 30, seed=cfg.sketch.seed)
    value, err = re.search(
        r"trace: (\S+) ± (\S+) \(standard error; xtrace, 30 products\)", out
    ).groups()
    assert float(value) == pytest.approx(est.value, rel=1e-5)
    assert float(err) == pytest.approx(est.standard_error, rel=1e-3)
    # density: the configuration's 3 probes x 10 steps, six bins whose masses sum to 1
    assert "3 probes x 10 Lanczos steps, 30 products" in out
    assert "mass outside the bulk" in out
    masses = [float(m) for m in re.findall(r"^\s+\[.*\)\s+(\S+)\s*#*$", out, re.M)]
    assert len(masses) == 6 and sum(masses) == pytest.approx(1.0, abs=1e-3)


def test_spectrum_flags_override_and_skip(trained, capsys):
    config, ckpt = trained
    argv = ["spectrum", str(config), "--checkpoint", str(ckpt), "--split", "test", "--quiet"]
    assert main([*argv, "--trace-products", "0", "--probes", "2", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "trace: skipped" in out and "2 probes x 5 Lanczos steps, 10 products" in out
    assert main([*argv, "--steps", "0", "--trace-method", "hutch++"]) == 0
    out = capsys.readouterr().out
    assert "spectral density: skipped" in out and "hutch++, 20 products" in out


def test_help_shows_spectrum(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "spectrum" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["spectrum", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--checkpoint", "--split", "--top", "--trace-products", "--probes", "--steps"):
        assert flag in text


def _one_error_line(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("curvsketch: error: "), lines
    return lines[0]


BAD = {
    "top_zero": (["--top", "0"], ["--top 0", ">= 1"]),
    "top_beyond_outer": (["--top", "9"], ["--top 9", "sketch.outer = 8"]),
    "probes_negative": (["--probes", "-1"], ["--probes -1", ">= 0"]),
    "steps_negative": (["--steps", "-3"], ["--steps -3"]),
    "trace_products_negative": (["--trace-products", "-1"], ["--trace-products -1"]),
    "trace_products_too_few": (["--trace-products", "1"], ["--trace-products 1", "xtrace"]),
    "trace_method": (["--trace-method", "exact"], ["--trace-method 'exact'", "xtrace"]),
    "bins_zero": (["--bins", "0"], ["--bins 0"]),
    "split": (["--split", "val"], ["--split", "'val'"]),
    "checkpoint_missing": (["--checkpoint", "nope.pt"], ["nope.pt", "not found"]),
    "config_missing": (["--config-is", "x"], ["unrecognized arguments"]),
}


@pytest.mark.parametrize(("flags", "words"), BAD.values(), ids=BAD.keys())
def test_bad_flags_are_one_error_line(trained, capsys, flags, words):
    config, ckpt = trained
    argv = ["spectrum", str(config), "--quiet", *flags]
    if "--checkpoint" not in flags:
        argv += ["--checkpoint", str(ckpt)]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    assert code == 2
    line = _one_error_line(capsys)
    for word in words:
        assert word in line


def test_missing_config_and_bad_number(tmp_path, capsys):
    assert main(["spectrum", str(tmp_path / "none.toml")]) == 2
    assert "none.toml not found" in _one_error_line(capsys)
    with pytest.raises(SystemExit) as exc:
        main(["spectrum", "c.toml", "--top", "many"])
    assert exc.value.code == 2
    assert "--top" in _one_error_line(capsys)


def test_checkpoint_of_another_model_is_refused(trained, tmp_path, capsys):
    config, _ = trained
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2, 2)}, other)
    assert main(["spectrum", str(config), "--checkpoint", str(other), "--quiet"]) == 2
    assert "does not fit the model" in _one_error_line(capsys)
