"""Hutchinson diagonal estimates against dense matrices: unbiased, with honest standard
errors, exact for diagonal matrices, independent of the block size."""

from __future__ import annotations

import math

import pytest
import torch

from curvsketch.sketch import AsymmetricOperatorError, DiagonalEstimate, diagonal

D = 40


def dense(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(D, D, generator=g, dtype=torch.float64)
    return (a + a.T) / 2 + torch.diag(torch.linspace(-5, 5, D, dtype=torch.float64))


def test_unbiased_over_seeds_with_standard_errors_at_the_right_rate():
    a = dense()
    truth = a.diagonal()
    n, seeds = 20, 120
    values = torch.stack([diagonal(a, n, seed=s, method="hutchinson").values for s in range(seeds)])
    # unbiased: the mean over seeds is within 4 standard errors of the mean
    exact_sd = ((a.square().sum(dim=1) - truth.square()) / n).sqrt()  # Σ_{j≠i} A_ij² / N
    assert bool(((values.mean(0) - truth).abs() < 4 * exact_sd / math.sqrt(seeds)).all())
    # the spread over seeds is the exact standard error
    torch.testing.assert_close(values.std(0), exact_sd, rtol=0.2, atol=0)
    # the reported standard errors estimate it, and cover the truth at about the normal rate
    est = diagonal(a, 400, seed=7, method="hutchinson")
    torch.testing.assert_close(est.standard_errors, exact_sd / math.sqrt(20), rtol=0.2, atol=0)
    inside = [
        float(((e.values - truth).abs() <= 1.96 * e.standard_errors).double().mean())
        for e in (diagonal(a, n, seed=s, method="hutchinson") for s in range(50))
    ]
    assert 0.9 < sum(inside) / len(inside) < 0.99


def test_exact_for_a_diagonal_matrix():
    d = torch.linspace(-3, 7, D, dtype=torch.float64)
    est = diagonal(torch.diag(d), 3, seed=1, method="hutchinson")
    torch.testing.assert_close(est.values, d, atol=1e-15, rtol=0)
    assert float(est.standard_errors.abs().max()) < 1e-14 * float(d.abs().max())
    assert isinstance(est, DiagonalEstimate) and est.num_products == 3
    assert est.method == "hutchinson"
    one = diagonal(torch.diag(d), 1, method="hutchinson")
    assert torch.isinf(one.standard_errors).all()  # no spread to estimate from one probe


def test_block_size_does_not_change_the_estimate():
    a = dense(1)
    calls = []

    class Op:
        shape, dtype, device = a.shape, a.dtype, a.device

        def __matmul__(self, x):
            calls.append(x.shape[1])
            return a @ x

    whole = diagonal(a, 30, seed=3, block_size=30, method="hutchinson")
    split = diagonal(Op(), 30, seed=3, block_size=7, method="hutchinson")
    assert calls == [7, 7, 7, 7, 2]
    torch.testing.assert_close(split.values, whole.values, atol=1e-13, rtol=0)
    torch.testing.assert_close(split.standard_errors, whole.standard_errors, atol=1e-13, rtol=0)
    assert not torch.equal(diagonal(a, 30, seed=4, method="hutchinson").values, whole.values)


def test_float32_and_validation():
    a = dense(2)
    est = diagonal(a.float(), 10, method="hutchinson")
    assert est.values.dtype == torch.float32 and est.standard_errors.dtype == torch.float32
    torch.testing.assert_close(
        est.values.double(), diagonal(a, 10, method="hutchinson").values, atol=1e-4, rtol=0
    )
    with pytest.raises(ValueError, match="num_products must be an integer"):
        diagonal(a, 2.5, method="hutchinson")
    with pytest.raises(ValueError, match="num_products must be >= 1"):
        diagonal(a, 0, method="hutchinson")
    with pytest.raises(ValueError, match="method='exact' is not a diagonal estimator"):
        diagonal(a, 4, method="exact")
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        diagonal(a, 4, block_size=0, method="hutchinson")
    with pytest.raises(ValueError, match="seed must be an integer"):
        diagonal(a, 4, seed=None, method="hutchinson")
    with pytest.raises(ValueError, match="square operator"):
        diagonal(torch.zeros(3, 4, dtype=torch.float64), 4, method="hutchinson")
    bad = a.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match="non-finite values"):
        diagonal(bad, 4, method="hutchinson")


# --- XDiag (Epperly, Tropp & Webber 2024, §4) -------------------------------------------


def spectral(dim: int, eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``V diag(λ) Vᵀ`` with a random orthogonal ``V``."""
    g = torch.Generator().manual_seed(seed)
    v, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    return (v * eigenvalues) @ v.T


def harmonic(dim: int, seed: int = 0) -> torch.Tensor:
    """Eigenvalues ``1/i``: most of the diagonal lies in the top eigenspace."""
    return spectral(dim, 1 / torch.arange(1, dim + 1, dtype=torch.float64), seed)


def orth(y: torch.Tensor) -> torch.Tensor:
    u, s, _ = torch.linalg.svd(y, full_matrices=False)
    return u[:, s > s[0] * max(y.shape) * torch.finfo(y.dtype).eps]


def direct_xdiag(a: torch.Tensor, num_products: int, seed: int) -> tuple[torch.Tensor, ...]:
    """XDiag by its definition: ``m`` separate bases ``Q_(i) = orth(AΩ without ω_i)``."""
    from curvsketch.sketch.diagonal import STREAM_XDIAG
    from curvsketch.sketch.noise import RademacherNoise

    dim, m = a.shape[0], num_products // 2
    omega = RademacherNoise(m, dim, seed, STREAM_XDIAG).columns(0, m)
    y = a @ omega
    loo = []
    for i in range(m):
        q = orth(y[:, [j for j in range(m) if j != i]]) if m > 1 else y[:, :0]
        p = q @ q.T
        loo.append((p @ a).diagonal() + omega[:, i] * (y[:, i] - p @ y[:, i]))
    est = torch.stack(loo, dim=1)
    return est.mean(dim=1), est.std(dim=1) / math.sqrt(m)


def test_xdiag_fast_downdating_equals_the_direct_leave_one_out():
    dim = 120
    g = torch.Generator().manual_seed(5)
    rank8 = torch.zeros(dim, dtype=torch.float64)
    rank8[:8] = torch.linspace(-2, 3, 8, dtype=torch.float64)
    cases = [
        (harmonic(dim), 4),
        (harmonic(dim), 31),  # odd: one product left unspent
        (torch.randn(dim, dim, generator=g, dtype=torch.float64), 40),  # non-symmetric: op.T
        (spectral(dim, rank8, 2), 30),  # rank-deficient AΩ: R is singular
        # Rademacher vectors in a 5-dimensional coordinate range: some vector is needed
        # to span it, so that leave-one-out loses a direction (not exact, still defined)
        (torch.diag((torch.arange(dim) < 5).double()), 20),
    ]
    for a, n in cases:
        for seed in (0, 1):
            est = diagonal(a, n, method="xdiag", seed=seed)
            values, errors = direct_xdiag(a, n, seed)
            torch.testing.assert_close(est.values, values, atol=1e-12, rtol=0)
            torch.testing.assert_close(est.standard_errors, errors, atol=1e-12, rtol=0)
            assert est.num_products == 2 * (n // 2) and est.method == "xdiag"


def test_xdiag_is_exact_on_rank_r_from_2r_plus_2_products():
    dim, r = 150, 8
    lam = torch.zeros(dim, dtype=torch.float64)
    lam[:r] = torch.tensor([5.0, 4, 3, 2, -1, -2, 0.5, 0.1], dtype=torch.float64)
    a = spectral(dim, lam, 3)
    truth, scale = a.diagonal(), float(a.diagonal().abs().max())
    for seed in range(3):
        # m = N/2 test vectors: every leave-one-out basis has m - 1 >= r vectors
        for n in (2 * r + 2, 2 * r + 3, 40):
            est = diagonal(a, n, method="xdiag", seed=seed)
            assert float((est.values - truth).abs().max()) < 1e-12 * scale
            assert float(est.standard_errors.max()) < 1e-12 * scale
        # the paper's condition is sharp: with m = r the bases miss a direction
        for n in (2 * r, 2 * r + 1):
            est = diagonal(a, n, method="xdiag", seed=seed)
            assert float((est.values - truth).abs().max()) > 1e-3 * scale
    # a diagonal operator is not low-rank; Hutchinson is exact there, XDiag is not
    d = torch.linspace(1, 2, dim, dtype=torch.float64)
    assert float((diagonal(torch.diag(d), 20, method="xdiag").values - d).abs().max()) > 1e-3


def test_xdiag_unbiased_with_standard_errors_at_a_plausible_rate():
    dim, n, seeds = 150, 20, 100
    a = harmonic(dim)
    truth = a.diagonal()
    runs = [diagonal(a, n, method="xdiag", seed=s) for s in range(seeds)]
    values = torch.stack([e.values for e in runs])
    errors = torch.stack([e.standard_errors for e in runs])
    # unbiased: the mean over seeds is as close as the spread of single runs allows
    single = float((values - truth).square().sum(dim=1).mean().sqrt())
    assert float((values.mean(0) - truth).norm()) < 2 * single / math.sqrt(seeds)
    # the leave-one-out error estimate is the right size but somewhat optimistic (the m
    # estimates share their test vectors): measured 2-SE coverage 0.87, RMS error / SE 1.2
    coverage = float(((values - truth).abs() <= 2 * errors).double().mean())
    assert 0.8 < coverage < 0.99
    rms = (values - truth).square().mean(0).sqrt()
    assert 0.8 < float((rms / errors.mean(0)).median()) < 1.6
    # on an indefinite, flat spectrum it is calibrated (measured coverage 0.92, ratio 1.03)
    b = spectral(dim, torch.linspace(-1, 1, dim, dtype=torch.float64), 1)
    runs = [diagonal(b, n, method="xdiag", seed=s) for s in range(50)]
    inside = [(e.values - b.diagonal()).abs() <= 2 * e.standard_errors for e in runs]
    assert 0.85 < float(torch.stack(inside).double().mean()) < 0.99


def test_xdiag_beats_hutchinson_at_equal_products_on_a_decaying_spectrum():
    a = harmonic(200, 4)
    truth = a.diagonal()

    def median_error(method: str, n: int) -> float:
        errs = [
            float((diagonal(a, n, method=method, seed=s).values - truth).norm() / truth.norm())
            for s in range(10)
        ]
        return float(torch.tensor(errs).median())

    for n in (20, 60):
        assert median_error("xdiag", n) < 0.7 * median_error("hutchinson", n)
    assert median_error("xdiag", 60) < 0.5 * median_error("hutchinson", 60)


def test_xdiag_block_size_does_not_change_the_estimate():
    a = harmonic(100, 6)
    calls = []

    class Op:  # no adjoint: taken to be symmetric
        shape, dtype, device = a.shape, a.dtype, a.device

        def __matmul__(self, x):
            calls.append(x.shape[1])
            return a @ x

    whole = diagonal(a, 30, method="xdiag", seed=3, block_size=15)
    split = diagonal(Op(), 30, method="xdiag", seed=3, block_size=4)
    assert calls == [2] + [4, 4, 4, 3] * 2  # symmetry check (no adjoint), AΩ, then AᵀQ
    torch.testing.assert_close(split.values, whole.values, atol=1e-13, rtol=0)
    torch.testing.assert_close(split.standard_errors, whole.standard_errors, atol=1e-13, rtol=0)
    other = diagonal(a, 30, method="xdiag", seed=4)
    assert not torch.equal(other.values, whole.values)
    # its own stream: not the Hutchinson probes
    assert not torch.allclose(
        diagonal(a, 2, method="xdiag").values, diagonal(a, 1, method="hutchinson").values
    )


def test_xdiag_float32_single_vector_and_validation():
    a = harmonic(60, 7)
    est = diagonal(a.float(), 12, method="xdiag")
    assert est.values.dtype == torch.float32 and est.standard_errors.dtype == torch.float32
    ref = diagonal(a, 12, method="xdiag")
    torch.testing.assert_close(est.values.double(), ref.values, atol=1e-5, rtol=0)
    one = diagonal(a, 3, method="xdiag")  # one test vector: Hutchinson on it, no spread
    assert one.num_products == 2 and torch.isinf(one.standard_errors).all()
    with pytest.raises(ValueError, match=r"num_products must be >= 2 \(xdiag: two products"):
        diagonal(a, 1, method="xdiag")
    with pytest.raises(ValueError, match="num_products must be <= 2·D = 120 for xdiag"):
        diagonal(a, 121, method="xdiag")
    with pytest.raises(ValueError, match="use one of hutchinson, xdiag"):
        diagonal(a, 4, method="xtrace")
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        diagonal(a, 4, method="xdiag", block_size=0)
    bad = a.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"op @ omega \(XDiag test vectors\) for indices \[0, 2\)"):
        diagonal(bad, 8, method="xdiag", block_size=2)

    class LateNaN:  # finite on the symmetry check and AΩ, NaN on the second pass (AᵀQ)
        shape, dtype, device = a.shape, a.dtype, a.device
        calls = 0

        def __matmul__(self, x):
            LateNaN.calls += 1
            return a @ x if LateNaN.calls <= 2 else torch.full_like(x, math.nan)

    with pytest.raises(ValueError, match=r"op.T @ Q \(XDiag basis columns\) for indices \[0, 4\)"):
        diagonal(LateNaN(), 8, method="xdiag")


def test_xdiag_without_an_adjoint_refuses_a_non_symmetric_operator():
    # Without op.T / op.rmatmul, XDiag multiplies by op in place of Aᵀ: only sound if A = Aᵀ.
    g = torch.Generator().manual_seed(0)
    a = torch.randn(80, 80, generator=g, dtype=torch.float64)

    class OneSided:
        shape, dtype, device = a.shape, a.dtype, a.device

        def __matmul__(self, x):
            return a @ x

    with pytest.raises(AsymmetricOperatorError, match="xdiag"):
        diagonal(OneSided(), 20, method="xdiag")
    truth = a.diagonal()  # with the adjoint (a tensor has .T) the estimate is unbiased
    runs = torch.stack([diagonal(a, 40, method="xdiag", seed=s).values for s in range(200)])
    assert float((runs.mean(0) - truth).abs().max()) < 5 * float(runs.std(0).max()) / 200**0.5
