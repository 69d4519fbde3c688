"""ssvd on rectangular matrices with known singular values."""

from __future__ import annotations

import pytest
import torch

from curvsketch.sketch import ssvd


def rectangular(m, n, sigma, seed=0):
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, len(sigma), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, len(sigma), generator=g, dtype=torch.float64))
    return (u * sigma) @ v.T


@pytest.mark.parametrize("noise", ["ssrft", "gaussian", "rademacher"])
@pytest.mark.parametrize(("m", "n"), [(300, 200), (150, 400)])
def test_exact_low_rank_rectangular(noise, m, n):
    sigma = torch.logspace(1, -1, 12, dtype=torch.float64)
    a = rectangular(m, n, sigma)
    res = ssvd(a, 15, noise=noise, seed=3, progress=False)
    torch.testing.assert_close(res.singular_values[:12], sigma, atol=1e-11, rtol=0)
    approx = (res.U * res.singular_values) @ res.V.T
    assert torch.linalg.matrix_norm(approx - a) / torch.linalg.matrix_norm(a) < 1e-12
    # singular vectors: A v_j = σ_j u_j
    torch.testing.assert_close(a @ res.V[:, :12], res.U[:, :12] * sigma, atol=1e-10, rtol=0)


def test_decaying_spectrum():
    sigma = torch.arange(1, 151, dtype=torch.float64) ** -2.0
    a = rectangular(250, 180, sigma, seed=1)
    res = ssvd(a, 40, progress=False)
    rel = (res.singular_values[:10] - sigma[:10]).abs() / sigma[:10]
    assert rel.max() < 0.02
    assert (res.singular_values[:-1] >= res.singular_values[1:]).all()


def test_products_counted_forward_and_adjoint(counting):
    a = rectangular(120, 90, torch.ones(5, dtype=torch.float64))
    op = counting(a)
    res = ssvd(op, 10, 25, block_size=8, progress=False)
    assert op.adjoint_products == 10
    assert op.products == 10 + 25
    assert res.num_products == 2 * 10 + 25
    assert max(op.widths) <= 8


def test_adjoint_through_dot_t():
    a = rectangular(80, 60, torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))

    class WithT:
        shape, dtype, device = (80, 60), torch.float64, torch.device("cpu")

        def __matmul__(self, x):
            return a @ x

        @property
        def T(self):
            return a.T

    res = ssvd(WithT(), 5, progress=False)
    torch.testing.assert_close(
        res.singular_values[:3], torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    )


def test_block_size_and_seed_determinism():
    a = rectangular(100, 70, torch.arange(1, 41, dtype=torch.float64) ** -1.0)
    r1 = ssvd(a, 10, block_size=3, seed=4, progress=False)
    r2 = ssvd(a, 10, block_size=64, seed=4, progress=False)
    torch.testing.assert_close(r1.singular_values, r2.singular_values, atol=1e-12, rtol=1e-10)
    assert set(r1.timings) >= {"measure", "qr", "core", "eigh", "eigvec"}
