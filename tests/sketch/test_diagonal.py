"""Hutchinson diagonal estimates against dense matrices: unbiased, with honest standard
errors, exact for diagonal matrices, independent of the block size."""

from __future__ import annotations

import math

import pytest
import torch

from curvsketch.sketch import DiagonalEstimate, diagonal

D = 40


def dense(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(D, D, generator=g, dtype=torch.float64)
    return (a + a.T) / 2 + torch.diag(torch.linspace(-5, 5, D, dtype=torch.float64))


def test_unbiased_over_seeds_with_standard_errors_at_the_right_rate():
    a = dense()
    truth = a.diagonal()
    n, seeds = 20, 120
    values = torch.stack([diagonal(a, n, seed=s).values for s in range(seeds)])
    # unbiased: the mean over seeds is within 4 standard errors of the mean
    exact_sd = ((a.square().sum(dim=1) - truth.square()) / n).sqrt()  # Σ_{j≠i} A_ij² / N
    assert bool(((values.mean(0) - truth).abs() < 4 * exact_sd / math.sqrt(seeds)).all())
    # the spread over seeds is the exact standard error
    torch.testing.assert_close(values.std(0), exact_sd, rtol=0.2, atol=0)
    # the reported standard errors estimate it, and cover the truth at about the normal rate
    est = diagonal(a, 400, seed=7)
    torch.testing.assert_close(est.standard_errors, exact_sd / math.sqrt(20), rtol=0.2, atol=0)
    inside = [
        float(((e.values - truth).abs() <= 1.96 * e.standard_errors).double().mean())
        for e in (diagonal(a, n, seed=s) for s in range(50))
    ]
    assert 0.9 < sum(inside) / len(inside) < 0.99


def test_exact_for_a_diagonal_matrix():
    d = torch.linspace(-3, 7, D, dtype=torch.float64)
    est = diagonal(torch.diag(d), 3, seed=1)
    torch.testing.assert_close(est.values, d, atol=1e-15, rtol=0)
    assert float(est.standard_errors.abs().max()) < 1e-14 * float(d.abs().max())
    assert isinstance(est, DiagonalEstimate) and est.num_products == 3
    assert est.method == "hutchinson"
    one = diagonal(torch.diag(d), 1)
    assert torch.isinf(one.standard_errors).all()  # no spread to estimate from one probe


def test_block_size_does_not_change_the_estimate():
    a = dense(1)
    calls = []

    class Op:
        shape, dtype, device = a.shape, a.dtype, a.device

        def __matmul__(self, x):
            calls.append(x.shape[1])
            return a @ x

    whole = diagonal(a, 30, seed=3, block_size=30)
    split = diagonal(Op(), 30, seed=3, block_size=7)
    assert calls == [7, 7, 7, 7, 2]
    torch.testing.assert_close(split.values, whole.values, atol=1e-13, rtol=0)
    torch.testing.assert_close(split.standard_errors, whole.standard_errors, atol=1e-13, rtol=0)
    assert not torch.equal(diagonal(a, 30, seed=4).values, whole.values)


def test_float32_and_validation():
    a = dense(2)
    est = diagonal(a.float(), 10)
    assert est.values.dtype == torch.float32 and est.standard_errors.dtype == torch.float32
    torch.testing.assert_close(est.values.double(), diagonal(a, 10).values, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="num_products must be an integer"):
        diagonal(a, 2.5)
    with pytest.raises(ValueError, match="num_products must be >= 1"):
        diagonal(a, 0)
    with pytest.raises(ValueError, match="method='exact' is not a diagonal estimator"):
        diagonal(a, 4, method="exact")
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        diagonal(a, 4, block_size=0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        diagonal(a, 4, seed=None)
    with pytest.raises(ValueError, match="square operator"):
        diagonal(torch.zeros(3, 4, dtype=torch.float64), 4)
    bad = a.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match="non-finite values"):
        diagonal(bad, 4)
