"""torchrun with 2 ranks (gloo): krylov and hmt split by columns, stores, a collective op."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _stored_ops import SlowDense, relative_difference, spectrum_matrix  # noqa: E402

from curvsketch.operators import HessianOperator  # noqa: E402
from curvsketch.sketch import SYMMETRY_PRODUCTS, seigh  # noqa: E402
from curvsketch.sketch.ranks import split_over_ranks  # noqa: E402
from torchrun_launch import run_torchrun  # noqa: E402

WORKER = HERE / "_ranks_worker.py"


def _load_worker():
    spec = importlib.util.spec_from_file_location("_ranks_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torchrun(out: Path) -> None:
    run_torchrun(WORKER, str(out))


def test_without_a_process_group_nothing_is_split():
    op = SlowDense(torch.eye(3, dtype=torch.float64))
    assert split_over_ranks(op) is op


def test_torchrun_two_ranks_equal_one_process(tmp_path):
    matrix = spectrum_matrix(200, seed=4)
    torch.save(matrix, tmp_path / "matrix.pt")
    _torchrun(tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    worker = _load_worker()
    diffs: dict[str, float] = {}
    for name, kw in worker.RUNS.items():
        reference = seigh(SlowDense(matrix), progress=False, **kw)
        products = kw.get("inner") or kw["outer"] * (2 + kw["power_iters"])
        shift = 20 if kw.get("which", "LM") != "LM" and kw["recovery"] == "hmt" else 0
        products += shift  # the shift's single-vector Lanczos steps: all on rank 0
        for where in ("memory", "store"):
            runs = [r[f"{name}/{where}"] for r in ranks]
            # the block products were split: each rank multiplied about half the columns
            cols = [run["columns"] - SYMMETRY_PRODUCTS for run in runs]
            assert sum(cols) == products and min(cols) >= (products - shift) // 3, (name, cols)
            results = [run["result"] for run in runs]
            if where == "store":
                assert results[1] is None  # rank 0 recovers, as for the single pass
                assert (tmp_path / f"{name}_store" / "done").is_dir()
            else:
                assert torch.equal(results[0]["values"], results[1]["values"])
            got = results[0]
            values = float((got["values"] - reference.eigenvalues).abs().max())
            values /= float(reference.eigenvalues.abs().max())
            u, v = got["vectors"], reference.eigenvectors
            u = u * torch.sign((u * v).sum(0))
            vectors = float((u - v).abs().max() / v.abs().max())
            diffs[f"{name}/{where}"] = max(values, vectors)
            assert values <= 1e-10 and vectors <= 1e-10, (name, where, values, vectors)
        # the store written by the two ranks resumes in one process with nothing to measure
        op = SlowDense(matrix)
        again = seigh(op, progress=False, store=tmp_path / f"{name}_store", **kw)
        assert op.columns == SYMMETRY_PRODUCTS
        assert max(relative_difference(again, reference)) <= 1e-10
    model, loss, data = worker.problem()
    full = HessianOperator(model, loss, data)
    for name, kw in worker.COLLECTIVE_RUNS.items():
        reference = seigh(full, progress=False, **kw)
        runs = [r[name] for r in ranks]
        assert runs[1]["result"] is None
        # collective: every rank multiplied every block (not split)
        assert runs[0]["columns"] == runs[1]["columns"] >= kw.get("inner", kw["outer"])
        got = runs[0]["result"]
        values = float((got["values"] - reference.eigenvalues).abs().max())
        values /= float(reference.eigenvalues.abs().max())
        u, v = got["vectors"], reference.eigenvectors
        vectors = float((u * torch.sign((u * v).sum(0)) - v).abs().max() / v.abs().max())
        diffs[name] = max(values, vectors)
        assert values <= 1e-10 and vectors <= 1e-10, (name, values, vectors)
    print("torchrun 2 ranks vs 1 process, max relative difference (values, vectors):")
    print(", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))


if not (Path(sys.executable).parent / "torchrun").exists():  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="torchrun not found next to the Python interpreter")
