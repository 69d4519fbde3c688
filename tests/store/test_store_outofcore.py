"""Out-of-core recovery (Direct TSQR from and to Zarr, stages run by Dask) and the on-disk
basis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from _store_ops import SlowDense, spectrum_matrix  # noqa: E402

from curvsketch.sketch import outofcore, seigh  # noqa: E402
from curvsketch.sketch.outofcore import (  # noqa: E402
    direct_tsqr,
    tsqr_rows,
    tsqr_workers,
    tsqr_zarr,
)
from curvsketch.sketch.stored import measure, recover  # noqa: E402
from curvsketch.store import ZarrMatrix  # noqa: E402

DIM, OUTER, INNER, BLOCK = 400, 24, 48, 8


@pytest.fixture(scope="module")
def op():
    return SlowDense(spectrum_matrix(DIM, seed=5))


def test_tiny_budget_matches_in_memory(tmp_path, op) -> None:
    ref = seigh(op, OUTER, INNER, block_size=BLOCK, progress=False)
    budget = 4 * OUTER * 8 * 50  # TSQR blocks of 50 rows: 8 row blocks
    res = seigh(
        op,
        OUTER,
        INNER,
        block_size=BLOCK,
        store=tmp_path / "s",
        memory_budget=budget,
        progress=False,
    )
    assert isinstance(res.Q, ZarrMatrix) and res.V is None
    scale = float(ref.eigenvalues.abs().max())
    assert float((res.eigenvalues - ref.eigenvalues).abs().max()) <= 1e-10 * scale
    u = res.Q.to_tensor()
    assert float((u.abs() - ref.eigenvectors.abs()).abs().max()) <= 1e-10
    idx = torch.tensor([399, 3, 3, 120])
    assert torch.allclose(res.rows(idx), ref.rows(idx), atol=1e-10) or torch.allclose(
        res.rows(idx).abs(), ref.rows(idx).abs(), atol=1e-10
    )
    top = res.top(5)
    assert top.Q.shape == (DIM, 5) and top.rows([1, 2]).shape == (2, 5)
    assert {"qr", "core", "eigh", "eigvec", "measure"} <= set(res.timings)


def test_parallel_blocks_match_in_memory(tmp_path, op, monkeypatch) -> None:
    """Three row blocks at once (Dask threads) give the same recovery as in memory."""
    monkeypatch.setattr(outofcore, "tsqr_workers", lambda *args: 3)
    ref = seigh(op, OUTER, INNER, block_size=BLOCK, progress=False)
    res = seigh(
        op,
        OUTER,
        INNER,
        block_size=BLOCK,
        store=tmp_path / "s",
        memory_budget=4 * OUTER * 8 * 3 * 30,  # 3 workers x blocks of 30 rows: 14 blocks
        progress=False,
    )
    scale = float(ref.eigenvalues.abs().max())
    assert float((res.eigenvalues - ref.eigenvalues).abs().max()) <= 1e-10 * scale
    u = res.Q.to_tensor()
    assert float((u.abs() - ref.eigenvectors.abs()).abs().max()) <= 1e-10


@pytest.mark.parametrize("workers", [1, 3])
def test_direct_tsqr_is_orthonormal_and_spans_y(tmp_path, op, workers) -> None:
    st = measure(op, OUTER, INNER, store=tmp_path / "s", block_size=BLOCK, progress=False)
    r = direct_tsqr(st, rows=37, col_chunk=5, workers=workers)  # uneven blocks, last short
    q = torch.from_numpy(np.asarray(st.group["Q"][:, :]))
    y = torch.from_numpy(st.read_y())
    assert st.group["Q"].chunks == (37, 5)
    assert torch.allclose(q.T @ q, torch.eye(OUTER, dtype=q.dtype), atol=1e-12)
    assert torch.allclose(q @ r, y, atol=1e-10 * float(y.abs().max()))
    assert "tsqr_Q1" not in st.group


def ill_conditioned(dim: int, outer: int, dtype: str, seed: int = 0) -> np.ndarray:
    """``G diag(10^linspace(0, -6)) Vᵀ``: ``cond ≈ 10⁶``, and not merely badly scaled
    columns (which the indirect ``Y R⁻¹`` would undo exactly)."""
    rng = np.random.default_rng(seed)
    v = np.linalg.qr(rng.standard_normal((outer, outer)))[0]
    y = rng.standard_normal((dim, outer)) * 10.0 ** np.linspace(0.0, -6.0, outer) @ v.T
    return y.astype(dtype)


@pytest.mark.parametrize(("dtype", "tol"), [("float32", 1e-5), ("float64", 1e-12)])
def test_tsqr_of_ill_conditioned_zarr_y_is_orthonormal(tmp_path, dtype, tol) -> None:
    dim, outer, rows = 17 * 170 + 15, 40, 170  # the last block (15 rows) is shorter than o
    y = ill_conditioned(dim, outer, dtype)
    group = zarr.open_group(str(tmp_path / "g"), mode="w", zarr_format=3)
    yz = group.create_array("Y", shape=y.shape, chunks=(100, 16), dtype=dtype)
    yz[:, :] = y
    r = tsqr_zarr(yz, group, rows, col_chunk=7, workers=2, name="B")
    q = np.asarray(group["B"][:, :])
    assert q.dtype == np.dtype(dtype) and r.dtype == np.dtype(dtype) and r.shape == (40, 40)
    assert "tsqr_Q1" not in group
    q64, r64, y64 = (a.astype(np.float64) for a in (q, r, y))
    assert np.linalg.cond(r64) > 1e5  # Y really is ill-conditioned
    assert np.linalg.norm(q64.T @ q64 - np.eye(outer), 2) <= tol
    assert np.linalg.norm(q64 @ r64 - y64) <= tol * np.linalg.norm(y64)
    # The indirect Q = Y R⁻¹ fails the same check (why the direct form is used).
    indirect = np.linalg.solve(r64.T, y64.T).T.astype(dtype).astype(np.float64)
    assert np.linalg.norm(indirect.T @ indirect - np.eye(outer), 2) > 10 * tol


def test_tsqr_rows_respects_budget_and_tallness() -> None:
    assert tsqr_rows(10_000, 20, 8, 4 * 20 * 8 * 500) == 500
    assert tsqr_rows(10_000, 20, 8, 4 * 20 * 8 * 500, workers=2) == 250
    assert tsqr_rows(10_000, 20, 8, 1) == 20
    assert tsqr_rows(100, 20, 8, 10**12) == 100


def test_tsqr_workers_fit_the_budget(monkeypatch) -> None:
    monkeypatch.setattr(outofcore.os, "cpu_count", lambda: 4)
    assert tsqr_workers(10**6, 20, 8, 10**12) == 4  # the CPUs
    assert tsqr_workers(10**6, 20, 8, 1) == 1
    per_worker = 4 * 20 * 8 * 80  # a block of 4·o rows
    assert tsqr_workers(10**6, 20, 8, 2 * per_worker) == 2
    rows = tsqr_rows(10**6, 20, 8, 2 * per_worker, workers=2)
    assert rows == 80 and 2 * 4 * rows * 20 * 8 <= 2 * per_worker


def test_zarr_matrix_indexing(tmp_path) -> None:
    data = np.arange(60.0).reshape(12, 5)
    arr = zarr.create_array(str(tmp_path / "a"), shape=data.shape, chunks=(5, 2), dtype="f8")
    arr[:, :] = data
    m = ZarrMatrix(arr)
    assert m.shape == (12, 5) and m.ndim == 2 and m.dtype == torch.float64
    assert torch.equal(m[torch.tensor([7, 1, 7, -1])], torch.from_numpy(data[[7, 1, 7, -1]]))
    assert torch.equal(m[2:4], torch.from_numpy(data[2:4]))
    view = m[:, 1:3]
    assert isinstance(view, ZarrMatrix) and view.shape == (12, 2)
    assert torch.equal(view[[0, 11]], torch.from_numpy(data[[0, 11], 1:3]))
    w = torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose(m @ w, torch.from_numpy(data) @ w)
    with pytest.raises(IndexError):
        m[[12]]


def test_out_of_core_needs_a_disk_store(op) -> None:
    with pytest.raises(ValueError, match="needs a store on disk"):
        recover(measure(op, 8, 16, store="memory", progress=False), memory_budget=10)


PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {here!r})
    import torch
    torch.set_num_threads(1)
    from _store_ops import LowRankPlusDiagonal
    from curvsketch.sketch import seigh

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    dim = int(sys.argv[1])
    op = LowRankPlusDiagonal(dim)
    seigh(op, 8, 16, block_size=8, store=sys.argv[2] + "/warm",
          memory_budget={budget}, progress=False)  # warm-up: imports, allocator, zarr
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    seigh(op, {outer}, {inner}, block_size=8, store=sys.argv[2] + "/run",
          memory_budget={budget}, progress=False)
    print(json.dumps({{"peak": status("VmHWM") - before, "dim": dim}}))
    """
)


@pytest.mark.slow
def test_peak_memory_grows_like_d_times_block_not_d_squared(tmp_path) -> None:
    outer, inner, budget = 64, 128, 2 * 2**20
    script = PEAK_SCRIPT.format(here=str(HERE), outer=outer, inner=inner, budget=budget)
    peaks = {}
    env = {**os.environ, "MALLOC_ARENA_MAX": "1"}  # zarr's I/O threads fragment arenas
    for dim in (50_000, 200_000):
        out = subprocess.run(
            [sys.executable, "-c", script, str(dim), str(tmp_path / str(dim))],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
            env=env,
        )
        peaks[dim] = json.loads(out.stdout.strip().splitlines()[-1])["peak"]
    small, large = peaks[50_000], peaks[200_000]
    # Linear growth in D (D² would be 16x), bounded by a few in-memory sketches D·o·8 (the
    # measurement of one block, SSRFT workspace included, dominates at this small o).
    assert large < 6 * max(small, 2**20), peaks
    assert large < 2 * 200_000 * outer * 8, peaks
