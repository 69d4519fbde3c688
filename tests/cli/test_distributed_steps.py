"""`curvsketch measure` / `recover` for recovery = "krylov" (sequential) and "hmt" (passes)."""

from __future__ import annotations

import argparse

import pytest
import torch

from curvsketch.cli.distributed import add_commands, build_operator
from curvsketch.experiments.config import load_config
from curvsketch.sketch import EighResult, seigh

CONFIG = """
name = "tiny"
[data]
name = "mnist16"
n_train_per_class = 4
n_test_per_class = 2
hessian_per_class = 2
[model]
name = "paper_mlp"
[train]
steps = 1
[hessian]
steps = [0]
dtype = "float64"
[sketch]
outer = 6
block_size = 4
{extra}
[analysis]
ks = [2]
main_k = 2
rhos = [0.05]
stability_ks = [2]
"""


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="curvsketch")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def _close(result: EighResult, ref: EighResult) -> None:
    scale = float(ref.eigenvalues.abs().max())
    assert float((result.eigenvalues - ref.eigenvalues).abs().max()) <= 1e-10 * scale
    u, v = result.eigenvectors, ref.eigenvectors
    assert float((u * torch.sign((u * v).sum(0)) - v).abs().max()) <= 1e-10


def test_hmt_as_job_arrays_pass_by_pass_then_recover(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG.format(extra='recovery = "hmt"\npower_iters = 1'))
    store = str(tmp_path / "store")
    base = ["measure", str(cfg), "--store", store, "--of", "2", "--quiet"]
    for k in range(3):  # pass 0 (range finder), 1 (power iteration), 2 (Rayleigh-Ritz)
        for w in ("1", "0"):
            assert _run([*base, "--worker", w, "--pass", str(k)]) == 0
        out = capsys.readouterr().out
        assert f"pass {k}: 2/2" in out
    assert "complete" in out
    with pytest.raises(ValueError, match="pass 2 needs pass 0 complete"):
        _run(["measure", str(cfg), "--store", str(tmp_path / "other"), "--pass", "2", "--quiet"])
    result_file = tmp_path / "result.pt"
    assert _run(["recover", "--store", store, "--out", str(result_file)]) == 0
    op = build_operator(load_config(cfg))
    ref = seigh(op, 6, recovery="hmt", power_iters=1, block_size=4, progress=False)
    _close(EighResult.load(result_file), ref)


def test_krylov_measures_in_one_process_resumably_then_recover(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG.format(extra='recovery = "krylov"\ninner = 24'))
    store = str(tmp_path / "store")
    with pytest.raises(ValueError, match="sequential"):
        _run(["measure", str(cfg), "--store", store, "--worker", "0", "--of", "2", "--quiet"])
    with pytest.raises(ValueError, match=r"--pass is for sketch.recovery = 'hmt'"):
        _run(["measure", str(cfg), "--store", store, "--pass", "0", "--quiet"])
    assert _run(["measure", str(cfg), "--store", store, "--quiet"]) == 0
    assert "6/6 blocks (complete" in capsys.readouterr().out
    assert _run(["measure", str(cfg), "--store", store, "--quiet"]) == 0  # nothing left
    result_file = tmp_path / "result.pt"
    assert _run(["recover", "--store", store, "--out", str(result_file)]) == 0
    op = build_operator(load_config(cfg))
    ref = seigh(op, 6, 24, recovery="krylov", block_size=4, progress=False)
    result = EighResult.load(result_file)
    _close(result, ref)
    assert result.recovery == "krylov" and result.num_products == 24
