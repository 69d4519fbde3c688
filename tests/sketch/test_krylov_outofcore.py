"""recovery="krylov" out of core (memory_budget=): equal to in memory, rows(), resume, refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _stored_ops import SlowDense, done_steps, one_thread, relative_difference  # noqa: E402

import curvsketch.sketch.krylov_outofcore as ooc  # noqa: E402
from curvsketch.operators.protocol import LinearOperator  # noqa: E402
from curvsketch.sketch import SYMMETRY_PRODUCTS, seigh  # noqa: E402
from curvsketch.sketch.krylov_outofcore import (  # noqa: E402
    FIXED_BLOCKS,
    READ_CONCURRENCY,
    recover_krylov_out_of_core,
    row_block_rows,
)
from curvsketch.store import MemoryStepStore, ZarrMatrix, ZarrStepStore  # noqa: E402

DIM, OUTER, INNER, BLOCK = 3000, 20, 200, 8  # 25 Krylov blocks
BLOCKS = INNER // BLOCK
KW = {"recovery": "krylov", "block_size": BLOCK, "progress": False}
#: Half the basis: 6 row blocks of 540 rows (at m / b = 25 the fixed D × b blocks are a
#: quarter of the basis already; see test_the_budget_splits_the_basis).
BUDGET = DIM * INNER * 8 // 2
#: Products before the first block of a stored run: the symmetry check and the probe.
PRE = SYMMETRY_PRODUCTS + 1


class Spectral(LinearOperator):
    """``H = U diag(d) Uᵀ`` with ``U`` two Householder reflections (dense eigenvectors, a
    product costs ``O(D·b)``); counts its product columns and raises after ``fail_after``
    (an injected crash)."""

    def __init__(self, values: torch.Tensor, seed: int = 0, fail_after: int | None = None):
        g = torch.Generator().manual_seed(seed)
        vs = torch.randn(values.shape[0], 2, generator=g, dtype=values.dtype)
        self.v = vs / torch.linalg.vector_norm(vs, dim=0)
        self.values, self.fail_after, self.columns = values, fail_after, 0
        self.shape = (int(values.shape[0]), int(values.shape[0]))
        self.dtype, self.device = values.dtype, torch.device("cpu")

    def _reflect(self, x: torch.Tensor, order: tuple[int, int]) -> torch.Tensor:
        for i in order:
            v = self.v[:, i : i + 1]
            x = x - 2 * v @ (v.T @ x)
        return x

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.columns + x.shape[1] > self.fail_after:
            raise RuntimeError("injected crash")
        self.columns += x.shape[1]
        y = self._reflect(x, (0, 1))  # Uᵀ x (U = P1 P0 with P0, P1 symmetric)
        return self._reflect(self.values[:, None] * y, (1, 0))

    def eigenvectors(self, index: torch.Tensor) -> torch.Tensor:
        """Columns ``U e_i``."""
        e = torch.zeros(self.shape[0], index.shape[0], dtype=self.values.dtype)
        e[index, torch.arange(index.shape[0])] = 1
        return self._reflect(e, (1, 0))


def known_values(dim: int) -> torch.Tensor:
    """``10·0.9^i``, every third negative: indefinite, sorted by ``|λ|``, gaps of 10 %."""
    values = 10 * 0.9 ** torch.arange(dim, dtype=torch.float64)
    values[1::3] *= -1
    return values


@pytest.fixture(scope="module")
def spectrum():
    return known_values(DIM)


@pytest.fixture(scope="module")
def reference(spectrum):
    with one_thread():
        return seigh(Spectral(spectrum), OUTER, INNER, **KW)


@pytest.fixture(scope="module")
def out_of_core(spectrum, tmp_path_factory):
    path = tmp_path_factory.mktemp("ooc") / "s"
    with one_thread():
        res = seigh(Spectral(spectrum), OUTER, INNER, store=path, memory_budget=BUDGET, **KW)
    return path, res


def test_the_budget_splits_the_basis():
    rows, ahead = row_block_rows(DIM, INNER, BLOCK, 8, BUDGET)
    fixed = (FIXED_BLOCKS + READ_CONCURRENCY) * DIM * BLOCK * 8
    assert (rows, ahead) == ((BUDGET - fixed) // (INNER * 8), False)
    assert 500 < rows < DIM // 5
    # Whole row chunks when one fits, read-ahead when two do.
    assert row_block_rows(10**6, 2000, 50, 4, 2 * 10**9, 83886) == (83886, False)
    assert row_block_rows(10**6, 2000, 16, 4, 2 * 10**9, 65536) == (65536, True)
    assert row_block_rows(10**6, 2000, 16, 4, 3 * 10**9, 65536) == (131072, True)


def test_equals_in_memory_krylov(spectrum, reference, out_of_core):
    path, res = out_of_core
    assert isinstance(res.Q, ZarrMatrix) and tuple(res.Q.shape) == (DIM, INNER)
    assert tuple(res.V.shape) == (INNER, OUTER)
    assert res.num_products == INNER and res.recovery == "krylov"
    assert res.timings["read"] > 0 and res.timings["qr"] >= res.timings["read"]
    values, vectors = relative_difference(res, reference)
    assert values <= 1e-10 and vectors <= 1e-10, (values, vectors)
    assert torch.allclose(res.residual_norms, reference.residual_norms, rtol=1e-6, atol=1e-12)
    # Against the known spectrum: the top 20 by |λ| have converged.
    assert float((res.eigenvalues - spectrum[:OUTER]).abs().max() / 10) <= 1e-10
    exact = Spectral(spectrum).eigenvectors(torch.arange(OUTER))
    assert float((exact.T @ res.eigenvectors).diagonal().abs().min()) >= 1 - 1e-9
    assert done_steps(path) == [f"k{j:06d}" for j in range(BLOCKS)]


def test_rows_reads_a_subset(reference, out_of_core):
    res = out_of_core[1]
    idx = torch.tensor([2999, 5, 17, 5, -1, 1500])
    rows = res.rows(idx)
    assert rows.shape == (6, OUTER)
    assert torch.equal(rows, torch.from_numpy(res.Q.array[[2999, 5, 17, 5, 2999, 1500]]) @ res.V)
    sign = torch.sign((res.eigenvectors * reference.eigenvectors).sum(0))
    assert float((rows * sign - reference.rows(idx)).abs().max()) <= 1e-10
    assert torch.equal(res.rows(slice(10, 20)), res.rows(torch.arange(10, 20)))
    assert res.top(5).rows(idx).shape == (6, 5)


def test_which_sa_out_of_core(spectrum, tmp_path):
    kw = {**KW, "which": "SA"}
    with one_thread():
        ref = seigh(Spectral(spectrum), 10, INNER, **kw)
        res = seigh(Spectral(spectrum), 10, INNER, store=tmp_path / "s", memory_budget=BUDGET, **kw)
    values, vectors = relative_difference(res, ref)
    assert res.which == "SA" and values <= 1e-10 and vectors <= 1e-10, (values, vectors)


def test_injected_crash_resumes_to_the_same_result(spectrum, reference, out_of_core, tmp_path):
    path = tmp_path / "s"
    crash_after = 11
    with one_thread():
        op = Spectral(spectrum, fail_after=PRE + crash_after * BLOCK)
        with pytest.raises(RuntimeError, match="injected crash"):
            seigh(op, OUTER, INNER, store=path, memory_budget=BUDGET, **KW)
        assert len(done_steps(path)) == crash_after
        op = Spectral(spectrum)
        resumed = seigh(op, OUTER, INNER, store=path, memory_budget=BUDGET, **KW)
    assert op.columns == PRE + (BLOCKS - crash_after) * BLOCK  # missing blocks only
    uninterrupted = out_of_core[1]
    assert torch.equal(resumed.eigenvalues, uninterrupted.eigenvalues)
    assert torch.equal(resumed.rows(slice(None)), uninterrupted.rows(slice(None)))
    values, vectors = relative_difference(resumed, reference)
    assert values <= 1e-10 and vectors <= 1e-10


def test_a_store_crashed_out_of_core_resumes_in_memory_and_back(spectrum, reference, tmp_path):
    path = tmp_path / "s"
    with one_thread():
        op = Spectral(spectrum, fail_after=PRE + 7 * BLOCK)
        with pytest.raises(RuntimeError):
            seigh(op, OUTER, INNER, store=path, memory_budget=BUDGET, **KW)
        in_memory = seigh(Spectral(spectrum), OUTER, INNER, store=path, **KW)
        st = ZarrStepStore(path)
        st.open_existing()
        on_disk = recover_krylov_out_of_core(st)
    assert isinstance(in_memory.Q, torch.Tensor) and isinstance(on_disk.Q, ZarrMatrix)
    for res in (in_memory, on_disk):
        values, vectors = relative_difference(res, reference)
        assert values <= 1e-10 and vectors <= 1e-10, (values, vectors)


def test_deflation_out_of_core_equals_in_memory(tmp_path, monkeypatch):
    # Rank 40 < m = 80: the Krylov space becomes invariant after 10 blocks of 4 and the
    # rest is filled with random vectors projected against the basis on disk.
    dim, rank, inner = 1000, 40, 80
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(dim, rank, generator=g, dtype=torch.float64))
    matrix = (q * torch.linspace(1, 5, rank, dtype=torch.float64)) @ q.T
    projected = []
    original = ooc.RowBlocks.project
    monkeypatch.setattr(
        ooc.RowBlocks, "project", lambda self, x, c1: projected.append(c1) or original(self, x, c1)
    )
    kw = {**KW, "block_size": 4}
    with one_thread():
        ref = seigh(SlowDense(matrix), 20, inner, **kw)
        budget = dim * inner * 8 * 3 // 4  # 2 row blocks
        res = seigh(SlowDense(matrix), 20, inner, store=tmp_path / "s", memory_budget=budget, **kw)
    assert projected and min(projected) > rank  # the fill, projected against the disk basis
    values, vectors = relative_difference(res, ref)
    assert values <= 1e-10 and vectors <= 1e-8, (values, vectors)
    basis = res.Q.to_tensor()
    gram = basis.T @ basis
    assert float((gram - torch.eye(inner, dtype=gram.dtype)).abs().max()) <= 1e-12


def test_a_budget_that_holds_the_basis_runs_in_memory(spectrum, reference, tmp_path):
    with one_thread():
        res = seigh(
            Spectral(spectrum),
            OUTER,
            INNER,
            store=tmp_path / "s",
            memory_budget=DIM * INNER * 8,
            **KW,
        )
    assert isinstance(res.Q, torch.Tensor)
    assert torch.equal(res.eigenvalues, reference.eigenvalues)


@pytest.mark.parametrize(
    ("store", "budget", "match"),
    [
        (None, BUDGET, "needs store=PATH"),
        ("memory", BUDGET, "needs store=PATH"),
        (MemoryStepStore(), BUDGET, "store on disk"),
        ("path", 0, "positive"),
        ("path", -5, "positive"),
        ("path", True, "positive integer"),
        ("path", 1.5e5, "positive integer"),
        ("path", 10_000, "too small .* memory_budget >= "),
    ],
)
def test_bad_budgets_are_refused_before_any_product(spectrum, tmp_path, store, budget, match):
    path = tmp_path / "s"
    op = Spectral(spectrum)
    with pytest.raises(ValueError, match=match):
        seigh(
            op, OUTER, INNER, store=path if store == "path" else store, memory_budget=budget, **KW
        )
    assert op.columns == 0 and not path.exists()


@pytest.mark.parametrize("ahead", [False, True])
def test_row_blocks_read_ahead_and_project(tmp_path, ahead):
    import zarr

    g = torch.Generator().manual_seed(5)
    basis = torch.linalg.qr(torch.randn(1000, 60, generator=g, dtype=torch.float64)).Q
    array = zarr.open_group(str(tmp_path / "z"), mode="w").create_array(
        "Q", shape=(1000, 80), chunks=(128, 20), dtype="f8", fill_value=0.0
    )
    array[:, :60] = basis.numpy()
    w = torch.randn(1000, 7, generator=g, dtype=torch.float64)
    reader = ooc.RowBlocks(array, 128, ahead, w)
    try:
        coef = reader.coefficients(w, 60)
        assert torch.allclose(coef, basis.T @ w, rtol=0, atol=1e-12)
        x = w.clone()
        reader.project(x, 60)
        assert torch.allclose(x, w - basis @ (basis.T @ w), rtol=0, atol=1e-12)
        assert reader.reads == 3 * 8  # 8 row blocks, read three times
    finally:
        reader.close()
