"""A-posteriori error estimates: unbiased, inside the stated bounds, scree bounds."""

from __future__ import annotations

import json
import math

import pytest
import torch

from curvsketch.sketch import (
    ErrorEstimate,
    aposteriori_error,
    error_probability_bounds,
    scree_bounds,
    seigh,
    ssvd,
)

D = 100


def test_probability_bounds_values():
    below, above = error_probability_bounds(30, 0.5)
    assert below == pytest.approx(0.0552, abs=5e-4)
    assert above == pytest.approx(0.2422, abs=5e-4)
    assert error_probability_bounds(30, 1.0)[0] == 0.0
    # more test vectors, tighter bounds
    assert error_probability_bounds(60, 0.5)[1] < above
    with pytest.raises(ValueError, match="eps must be > 0"):
        error_probability_bounds(30, 0.0)
    with pytest.raises(ValueError, match="num_tests must be >= 1"):
        error_probability_bounds(0, 0.5)


def test_exact_approximation_has_zero_error(spectral):
    lam = torch.zeros(D, dtype=torch.float64)
    lam[:5] = torch.tensor([5.0, -4, 3, -2, 1], dtype=torch.float64)
    h, _ = spectral(lam)
    res = seigh(h, 10, progress=False)
    est = aposteriori_error(h, res, progress=False)
    assert est.frob_residual < 1e-12 and est.relative_error < 1e-12
    assert est.frob_op == pytest.approx(est.frob_approx, rel=1e-12)
    assert len(est.scree_lower) == len(est.scree_upper) == 11


def residual_op(rank, seed=0):
    """A symmetric matrix E with a given rank and ‖E‖_F = 1."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(D, rank, generator=g, dtype=torch.float64))
    lam = torch.linspace(1, 2, rank, dtype=torch.float64)
    e = (u * lam) @ u.T
    return e / torch.linalg.matrix_norm(e)


def test_unbiased_and_within_the_probability_bounds():
    """err² over many independent seeds: mean ≈ ‖E‖², tails below the stated bounds.

    E has rank 1 (the worst case: err² = ‖E‖² χ²_p / p), approx = 0.
    """
    e = residual_op(1)
    zero = torch.zeros(D, D, dtype=torch.float64)
    p, eps, seeds = 30, 0.5, 400
    sq = torch.tensor(
        [
            aposteriori_error(e, zero, p, seed=s, progress=False).frob_residual ** 2
            for s in range(seeds)
        ]
    )
    # unbiased: E[err²] = 1, sd(err²) = sqrt(2/p); 400 seeds -> standard error 0.013
    assert abs(float(sq.mean()) - 1.0) < 4 * math.sqrt(2 / p) / math.sqrt(seeds)
    below, above = error_probability_bounds(p, eps)
    slack = 3 * math.sqrt(0.25 / seeds)
    assert float((sq <= 1 - eps).double().mean()) <= below + slack
    assert float((sq >= 1 + eps).double().mean()) <= above + slack


def test_norm_estimates_are_close_with_many_tests(spectral, random_signs):
    lam = torch.arange(1, D + 1, dtype=torch.float64) ** -1.0 * random_signs(D)
    h, _ = spectral(lam)
    res = seigh(h, 20, progress=False)
    est = aposteriori_error(h, res, num_tests=400, seed=1, progress=False)
    dense = (res.eigenvectors * res.eigenvalues) @ res.eigenvectors.T
    true_res = float(torch.linalg.matrix_norm(h - dense))
    assert est.frob_op == pytest.approx(float(lam.norm()), rel=0.1)
    assert est.frob_approx == pytest.approx(float(res.eigenvalues.norm()), rel=0.1)
    assert est.frob_residual == pytest.approx(true_res, rel=0.1)
    assert est.relative_error == pytest.approx(est.frob_residual / est.frob_op)


def test_scree_bounds_bracket_the_truth(spectral, random_signs):
    lam = torch.arange(1, D + 1, dtype=torch.float64) ** -1.0 * random_signs(D)
    h, _ = spectral(lam)
    res = seigh(h, 30, progress=False)
    est = aposteriori_error(h, res, num_tests=200, progress=False)
    lower, upper = torch.tensor(est.scree_lower), torch.tensor(est.scree_upper)
    assert (lower <= upper).all()
    assert (lower[:-1] >= lower[1:]).all() and (upper[:-1] >= upper[1:]).all()
    assert lower[-1] == 0.0
    frob = float(lam.norm())
    for r in (1, 5, 10, 20, 30):
        truncated = res.top(r)
        u = truncated.eigenvectors
        scree = (
            float(torch.linalg.matrix_norm(h - (u * truncated.eigenvalues) @ u.T)) ** 2 / frob**2
        )
        assert scree <= upper[r] * 1.1
    # the formulas, directly
    lo, up = scree_bounds(torch.tensor([3.0, -2.0, 1.0]), frob_op=4.0, frob_residual=0.5)
    assert lo == pytest.approx([14 / 16, 5 / 16, 1 / 16, 0.0])
    assert up[1] == pytest.approx(((math.sqrt(5) + 0.5) / 4) ** 2)


def test_serialisable_and_round_trip(spectral):
    h, _ = spectral(torch.arange(1, D + 1, dtype=torch.float64) ** -1.0)
    est = aposteriori_error(h, seigh(h, 10, progress=False), progress=False)
    data = json.loads(json.dumps(est.to_dict()))
    assert data["num_tests"] == 30 and len(data["residual_samples"]) == 30
    assert ErrorEstimate.from_dict(data) == est
    assert est.probability_bounds(0.5) == error_probability_bounds(30, 0.5)


def test_plain_operator_and_svd_approximations(spectral, counting):
    h, _ = spectral(torch.arange(1, D + 1, dtype=torch.float64) ** -1.0)
    op = counting(h)
    est = aposteriori_error(op, 0.5 * h, num_tests=20, block_size=8, progress=False)
    assert est.scree_lower is None
    assert op.products == 20 and max(op.widths) <= 8
    assert est.relative_error == pytest.approx(0.5, rel=1e-12)
    a = torch.randn(60, 40, dtype=torch.float64)
    svd = ssvd(a, 10, progress=False)
    est = aposteriori_error(a, svd, progress=False)
    assert est.scree_upper is not None and len(est.scree_upper) == 11


def test_test_vectors_are_independent_of_sketch_seeds():
    from curvsketch.sketch.aposteriori import STREAM
    from curvsketch.sketch.noise import GaussianNoise
    from curvsketch.sketch.seigh import STREAM_PHI, STREAM_PSI

    assert STREAM not in (STREAM_PSI, STREAM_PHI)
    a = GaussianNoise(5, 50, 0, STREAM).to_dense()
    b = GaussianNoise(5, 50, 0, STREAM_PSI).to_dense()
    assert not torch.allclose(a, b)
