"""`curvsketch measure --worker i --of n` then `curvsketch recover` (cli/distributed.py)."""

from __future__ import annotations

import argparse

import pytest
import torch

from curvsketch.cli.distributed import add_commands, build_operator
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
outer = 8
inner = 20
block_size = 6
recovery = "singlepass"
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


def test_measure_workers_then_recover_equals_seigh(tmp_path, capsys) -> None:
    from curvsketch.experiments.config import load_config

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    store = str(tmp_path / "store")
    for i in (1, 0):
        assert (
            _run(
                ["measure", str(cfg), "--store", store, "--worker", str(i), "--of", "2", "--quiet"]
            )
            == 0
        )
    assert "complete" in capsys.readouterr().out
    out = tmp_path / "result.pt"
    assert _run(["recover", "--store", store, "--out", str(out)]) == 0
    result = EighResult.load(out)
    op = build_operator(load_config(cfg))
    ref = seigh(op, 8, 20, block_size=6, progress=False)
    scale = float(ref.eigenvalues.abs().max())
    assert float((result.eigenvalues - ref.eigenvalues).abs().max()) <= 1e-10 * scale
    assert torch.allclose(result.eigenvectors.abs(), ref.eigenvectors.abs(), atol=1e-10)


def test_measure_refuses_other_recoveries(tmp_path) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG.replace('"singlepass"', '"tropp"'))
    with pytest.raises(ValueError, match="singlepass"):
        _run(["measure", str(cfg), "--store", str(tmp_path / "s"), "--quiet"])
