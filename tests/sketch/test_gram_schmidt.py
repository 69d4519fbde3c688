"""Block Gram–Schmidt of the Krylov recurrence; float32 Krylov past the numerical rank.

A spectrum that falls to a flat level far below ``100·eps·‖H‖`` exhausts the numerical
rank of a float32 Krylov basis; the blocks built after that point come from heavy
cancellation (deflation, nearly dependent columns). Before the DGKS re-projections of
``gram_schmidt.project_full`` / ``gram_schmidt.next_block`` this lost orthogonality within
two blocks (``|QᵀQ − I|`` 0.9) and the Ritz values left the spectrum (13.9 for ``‖H‖ = 10``).
"""

from __future__ import annotations

import torch

from curvsketch.sketch.gram_schmidt import next_block, project_full
from curvsketch.sketch.krylov import KrylovState, block_krylov

DIM, RANK, BLOCK, BLOCKS = 20_000, 200, 25, 16  # a 400-column basis, twice the rank


def flat_tail_spectrum() -> torch.Tensor:
    """``10·0.98^i`` for ``i < RANK``, then flat at 1e-6; every third negative."""
    i = torch.arange(DIM, dtype=torch.float64)
    d = torch.where(i < RANK, 10 * 0.98**i, torch.full_like(i, 1e-6))
    d[2::3] *= -1
    return d


class Diagonal:
    """``diag(d)`` in float32."""

    def __init__(self, d: torch.Tensor) -> None:
        self.d = d.float()
        self.shape, self.dtype, self.device = (DIM, DIM), torch.float32, torch.device("cpu")

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return self.d[:, None] * x


def test_basis_stays_orthonormal_past_the_numerical_rank():
    d = flat_tail_spectrum()
    start = torch.randn(DIM, BLOCK, generator=torch.Generator().manual_seed(0))
    state = KrylovState(start, BLOCKS)
    state.start(start)
    for _ in range(BLOCKS):
        state.step(Diagonal(d), block_size=BLOCK)
    q = state.basis.double()
    gram = q.T @ q
    gram.diagonal().sub_(1.0)
    # measured 1.8e-4 (about 1,500 float32 roundoffs; the healthy blocks alone reach
    # 4e-5); 1.0 before the re-projections
    assert float(gram.abs().max()) < 1e-3


def test_ritz_values_stay_in_the_spectrum_past_the_numerical_rank():
    d = flat_tail_spectrum()
    start = torch.randn(DIM, BLOCK, generator=torch.Generator().manual_seed(1))
    factors = block_krylov(Diagonal(d), start, BLOCKS, block_size=BLOCK, keep=20)
    exact = d[d.abs().argsort(descending=True)][:10]
    assert torch.allclose(factors.values[:10].double(), exact, rtol=1e-3)
    assert float(factors.values.abs().max()) <= 10 * (1 + 1e-3)


def _orthonormal(rows: int, cols: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(rows, cols, generator=g, dtype=torch.float64)).Q.to(dtype)


def test_project_full_repeats_when_a_pass_cancels():
    basis = _orthonormal(5000, 100, 0)
    g = torch.Generator().manual_seed(1)
    new = torch.randn(5000, 4, generator=g) * 1e-5  # small new directions ...
    w = basis @ torch.randn(100, 4, generator=g) + new  # ... under a large part in the basis
    passes = []

    def coefficients(x):
        passes.append(1)
        return basis.T @ x

    coef = project_full(w, coefficients, lambda x, c: x.addmm_(basis, c, alpha=-1))
    assert len(passes) >= 2  # one pass leaves eps·‖w‖ ≈ 1e-6 along the basis: again
    assert float((basis.T @ w).abs().max() / w.norm(dim=0).min()) < 1e-5
    assert coef.shape == (100, 4)


def test_project_full_one_pass_when_nothing_cancels():
    basis = _orthonormal(5000, 100, 2)
    w = torch.randn(5000, 4, generator=torch.Generator().manual_seed(3))
    passes = []

    def coefficients(x):
        passes.append(1)
        return basis.T @ x

    project_full(w, coefficients, lambda x, c: x.addmm_(basis, c, alpha=-1))
    assert len(passes) == 1


def test_next_block_nearly_dependent_columns_stay_orthogonal_to_the_basis():
    basis = _orthonormal(5000, 100, 4)
    g = torch.Generator().manual_seed(5)
    shared = torch.randn(5000, 1, generator=g, dtype=torch.float64).float()
    # columns that agree to 1e-4: their QR divides the rounding along the basis by 1e-4
    w = shared + 1e-4 * torch.randn(5000, 6, generator=g)
    w += 1e-6 * (basis @ torch.randn(100, 6, generator=g))  # rounding-like residue
    w -= basis @ (basis.T @ w)
    q, r = next_block(w, basis, tol=1e-9, generator=torch.Generator().manual_seed(0))
    assert float((basis.T @ q).abs().max()) < 1e-5
    gram = q.T.double() @ q.double()
    assert torch.allclose(gram, torch.eye(6, dtype=torch.float64), atol=1e-5)
    assert float((q @ r - w).abs().max() / w.abs().max()) < 1e-5


def test_next_block_deflates_a_rank_deficient_block():
    basis = _orthonormal(3000, 50, 6, dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    w = torch.randn(3000, 2, generator=g, dtype=torch.float64) @ torch.randn(
        2, 5, generator=g, dtype=torch.float64
    )  # rank 2 of 5
    w -= basis @ (basis.T @ w)
    q, r = next_block(w, basis, tol=1e-8, generator=torch.Generator().manual_seed(0))
    assert float((basis.T @ q).abs().max()) < 1e-12
    assert torch.allclose(q.T @ q, torch.eye(5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(q @ r, w, atol=1e-10)
