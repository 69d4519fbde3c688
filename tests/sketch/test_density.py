"""Stochastic Lanczos quadrature against dense float64 oracles on synthetic spectra: mass 1,
honest moments, exact quadrature where Lanczos is exact, convergence in Wasserstein
distance, deflation of outliers, one operator call per step for all probes, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from curvsketch.sketch.density import STREAM, SpectralDensity, spectral_density
from curvsketch.sketch.measure import NonFiniteMeasurementError
from curvsketch.sketch.noise import RademacherNoise
from curvsketch.sketch.result import EighResult
from curvsketch.sketch.symmetry import AsymmetricOperatorError

D = 150


def bulk(d: int = D) -> torch.Tensor:
    """A lumpy spectrum: a uniform block, a cluster near 0 and a few negatives."""
    g = torch.Generator().manual_seed(7)
    a = torch.rand(d // 2, generator=g, dtype=torch.float64) * 2 + 1
    b = torch.randn(d // 3, generator=g, dtype=torch.float64) * 0.05
    c = -torch.rand(d - d // 2 - d // 3, generator=g, dtype=torch.float64) * 0.5
    return torch.cat([a, b, c])


def one(x: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x)


def test_mass_one_moments_within_standard_errors(spectral):
    lam = bulk()
    a, _ = spectral(lam)
    est = spectral_density(a, num_probes=16, lanczos_steps=20, seed=3)
    assert isinstance(est, SpectralDensity)
    assert est.nodes.shape == est.weights.shape == (16, 20)
    torch.testing.assert_close(est.weights.sum(1), torch.ones(16, dtype=torch.float64))
    total, err = est.integrate(one)
    assert abs(total - 1) < 1e-12 and err < 1e-12
    # the broadened density integrates to 1 on its default grid and on a wide one
    assert abs(float(torch.trapezoid(est.values, est.grid)) - 1) < 1e-6
    wide = torch.linspace(-20, 20, 20001, dtype=torch.float64)
    for sigma in (None, 0.3):
        g, rho = est.broaden(wide, sigma)
        assert abs(float(torch.trapezoid(rho, g)) - 1) < 1e-6 and bool((rho >= 0).all())
    (m1, e1), (m2, e2) = est.moments(2)
    assert abs(m1 - float(lam.mean())) < 3 * e1
    assert abs(m2 - float(lam.square().mean())) < 3 * e2
    assert est.num_products == 16 * 20 and est.num_calls == 20


def test_standard_error_covers_the_trace_at_about_the_normal_rate(spectral):
    lam = bulk(100)
    a, _ = spectral(lam, seed=1)
    truth = float(lam.mean())
    inside = 0
    for s in range(100):
        value, err = spectral_density(a, num_probes=8, lanczos_steps=4, seed=s).integrate(
            lambda x: x
        )
        inside += abs(value - truth) <= 2 * err
    assert 85 <= inside <= 99


def test_quadrature_is_exact_per_probe_up_to_degree_2m_minus_1(spectral):
    lam = bulk()
    a, u = spectral(lam)
    m, p = 5, 6
    est = spectral_density(a, num_probes=p, lanczos_steps=m, seed=11)
    q = RademacherNoise(p, D, 11, STREAM).columns(0, p) / math.sqrt(D)
    for n in range(2 * m):  # degrees 0..2m-1
        exact = ((u.T @ q).square() * lam[:, None] ** n).sum(0)  # q_pᵀ A^n q_p
        quad = (est.weights * est.nodes**n).sum(1)
        torch.testing.assert_close(quad, exact, rtol=1e-9, atol=1e-12)
    # with m = D the quadrature is exact for every function (here exp)
    full = spectral_density(a, num_probes=3, lanczos_steps=D, seed=11)
    exact = ((u.T @ q[:, :3]).square() * lam.exp()[:, None]).sum(0)
    quad = (full.weights * full.nodes.exp()).sum(1)
    torch.testing.assert_close(quad, exact, rtol=1e-9, atol=0)
    # … and the mean over probes is Hutchinson's estimate with those probes
    value, _ = full.integrate(torch.exp)
    assert abs(value - float(exact.mean())) < 1e-10


def test_no_ghost_copies_of_converged_outliers(spectral):
    """Plain Lanczos in floating point repeats converged Ritz values ("ghosts", Paige 1971);
    with full reorthogonalisation each outlier is one node per probe, holding its weight."""
    lam = torch.cat([torch.tensor([100.0, 60.0, 30.0], dtype=torch.float64), bulk()[3:]])
    a, u = spectral(lam)
    est = spectral_density(a, num_probes=4, lanczos_steps=120, seed=3)
    q = RademacherNoise(4, D, 3, STREAM).columns(0, 4) / math.sqrt(D)
    for k, outlier in enumerate(lam[:3].tolist()):
        near = (est.nodes - outlier).abs() < 1e-6 * outlier
        assert near.sum(1).tolist() == [1, 1, 1, 1]
        weight = (est.weights * near).sum(1)
        torch.testing.assert_close(weight, (u[:, k] @ q).square(), rtol=1e-8, atol=1e-14)


def test_probes_do_not_interact_and_seeds_reproduce(spectral):
    a, _ = spectral(bulk())
    big = spectral_density(a, num_probes=5, lanczos_steps=12, seed=4)
    small = spectral_density(a, num_probes=2, lanczos_steps=12, seed=4)
    torch.testing.assert_close(small.nodes, big.nodes[:2], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(small.weights, big.weights[:2], rtol=1e-10, atol=1e-12)
    again = spectral_density(a, num_probes=5, lanczos_steps=12, seed=4)
    assert torch.equal(again.nodes, big.nodes)
    other = spectral_density(a, num_probes=5, lanczos_steps=12, seed=5)
    assert not torch.allclose(other.nodes, big.nodes)


def test_wasserstein_distance_shrinks_with_more_probes(spectral):
    lam = bulk(200)
    a, _ = spectral(lam, seed=2)

    def distance(p: int) -> float:
        runs = [spectral_density(a, num_probes=p, lanczos_steps=40, seed=s) for s in range(3)]
        return sum(r.wasserstein(lam) for r in runs) / len(runs)

    # (measured: 0.040 vs 0.022; a floor set by the Lanczos steps remains, ~0.1 at m = 5)
    few, many = distance(4), distance(64)
    assert many < 0.75 * few


def test_low_rank_breakdown_is_exact_and_finite(spectral, counting):
    lam = torch.zeros(D, dtype=torch.float64)
    lam[:6] = torch.tensor([5.0, 3.0, 2.0, -1.0, -4.0, 0.5], dtype=torch.float64)
    a, u = spectral(lam, seed=3)
    op = counting(a)
    est = spectral_density(op, num_probes=4, lanczos_steps=40, seed=0, check_symmetry=False)
    assert bool(torch.isfinite(est.nodes).all() and torch.isfinite(est.weights).all())
    assert bool(torch.isfinite(est.values).all())
    # the Krylov space of a rank-6 operator is at most 7-dimensional: each probe stopped
    assert int(est.steps.max()) <= 8 and est.num_products == int(est.steps.sum()) < 4 * 40
    assert op.calls == est.num_calls == int(est.steps.max())
    torch.testing.assert_close(est.weights.sum(1), torch.ones(4, dtype=torch.float64))
    q = RademacherNoise(4, D, 0, STREAM).columns(0, 4) / math.sqrt(D)
    for f in (torch.exp, torch.cos, lambda x: x**5):
        exact = ((u.T @ q).square() * f(lam)[:, None]).sum(0)
        quad = torch.where(est.weights > 0, est.weights * f(est.nodes), 0.0).sum(1)
        torch.testing.assert_close(quad, exact, rtol=1e-9, atol=1e-12)
    # the zero operator: one step, a single node at 0
    zero = spectral_density(torch.zeros(20, 20, dtype=torch.float64), num_probes=3, lanczos_steps=5)
    assert zero.num_products == 3 and zero.integrate(torch.exp) == (1.0, 0.0)
    assert bool(torch.isfinite(zero.values).all()) and zero.sigma > 0


def test_one_operator_call_per_step_for_all_probes(spectral, counting):
    a, _ = spectral(bulk())
    op = counting(a)
    est = spectral_density(op, num_probes=7, lanczos_steps=9, check_symmetry=False)
    assert op.calls == 9 and op.widths == [7] * 9 and op.products == est.num_products == 63


def _deflation(a: torch.Tensor, k: int, *, ritz: torch.Tensor | None = None) -> EighResult:
    lam, vec = torch.linalg.eigh(a)
    order = torch.argsort(lam.abs(), descending=True)[:k]
    return EighResult(
        eigenvalues=lam[order], Q=vec[:, order].contiguous(), recovery="krylov", ritz_values=ritz
    )


def test_deflation_removes_the_spikes_and_keeps_mass_and_moments(spectral):
    g = torch.Generator().manual_seed(5)
    bulk_lam = torch.rand(D - 3, generator=g, dtype=torch.float64) + 0.5  # in [0.5, 1.5]
    outliers = torch.tensor([100.0, 50.0, 20.0], dtype=torch.float64)
    lam = torch.cat([outliers, bulk_lam])
    a, _ = spectral(lam, seed=4)
    plain = spectral_density(a, num_probes=10, lanczos_steps=12, seed=1)
    defl = spectral_density(a, num_probes=10, lanczos_steps=12, seed=1, deflate=_deflation(a, 3))
    torch.testing.assert_close(defl.spikes, outliers)
    # no node outside the bulk: neither the outliers nor the projection's zeros are sampled
    assert float(defl.nodes.min()) > 0.5 - 1e-9 and float(defl.nodes.max()) < 1.5 + 1e-9
    # plain SLQ smears the outliers into weak nodes, deflated SLQ has them at weight 1/D
    assert float(plain.nodes.max()) > 90
    torch.testing.assert_close(
        defl.weights.sum(1), torch.full((10,), (D - 3) / D, dtype=torch.float64)
    )
    assert abs(defl.integrate(one)[0] - 1) < 1e-12
    _, rho = defl.broaden(torch.linspace(-50, 200, 50001, dtype=torch.float64), 0.2)
    assert abs(float(torch.trapezoid(rho, torch.linspace(-50, 200, 50001))) - 1) < 1e-6
    for n in (1, 2, 3):
        value, err = defl.integrate(lambda x, n=n: x**n)
        assert abs(value - float((lam**n).mean())) < 3 * err + 1e-12
    # the bulk matches: remainder measure (renormalised) against the bulk eigenvalues
    bulk_only = SpectralDensity(
        nodes=defl.nodes,
        weights=defl.weights * D / (D - 3),
        spikes=torch.zeros(0, dtype=torch.float64),
        dim=D,
        num_probes=10,
        lanczos_steps=12,
        num_products=0,
        grid=defl.grid,
        values=defl.values,
    )
    assert bulk_only.wasserstein(bulk_lam) < 0.03
    assert defl.wasserstein(lam) < plain.wasserstein(lam)
    # full Lanczos on the remainder (D - k steps at most): stops there, moments exact per probe
    full = spectral_density(a, num_probes=2, lanczos_steps=D, deflate=_deflation(a, 3))
    assert int(full.steps.max()) <= D - 3 and full.nodes.shape[1] == D - 3


def test_deflation_uses_ritz_values_when_present(spectral):
    a, _ = spectral(torch.cat([torch.tensor([30.0, -20.0]), torch.rand(D - 2).double()]))
    ritz = torch.tensor([29.5, -19.5], dtype=torch.float64)
    est = spectral_density(a, num_probes=2, lanczos_steps=4, deflate=_deflation(a, 2, ritz=ritz))
    torch.testing.assert_close(est.spikes, ritz)


def test_float32_operator_agrees_with_float64(spectral):
    a, _ = spectral(bulk())
    e64 = spectral_density(a, num_probes=4, lanczos_steps=10)
    e32 = spectral_density(a.float(), num_probes=4, lanczos_steps=10)
    assert e32.nodes.dtype == torch.float64
    m32, m64 = e32.integrate(lambda x: x**2)[0], e64.integrate(lambda x: x**2)[0]
    assert abs(m32 - m64) < 1e-5 * abs(m64)


def test_non_finite_products_name_the_step(spectral):
    a, _ = spectral(bulk())

    class Breaks:
        shape, dtype, device = a.shape, a.dtype, a.device
        calls = 0

        def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            y = a @ x
            return y * math.nan if self.calls == 3 else y

    with pytest.raises(NonFiniteMeasurementError, match="Lanczos step 3 of 10"):
        spectral_density(Breaks(), num_probes=2, lanczos_steps=10, check_symmetry=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_probes": 0, "lanczos_steps": 3}, "num_probes must be >= 1"),
        ({"num_probes": 2.0, "lanczos_steps": 3}, "num_probes must be an integer"),
        ({"num_probes": 2, "lanczos_steps": 0}, "lanczos_steps must be >= 1"),
        ({"num_probes": 2, "lanczos_steps": 31}, "exceeds the dimension D=30"),
        ({"num_probes": 2, "lanczos_steps": 3, "sigma": 0.0}, "sigma must be > 0"),
        ({"num_probes": 2, "lanczos_steps": 3, "sigma": -1}, "sigma must be > 0"),
        ({"num_probes": 2, "lanczos_steps": 3, "sigma": math.nan}, "sigma must be > 0"),
        ({"num_probes": 2, "lanczos_steps": 3, "sigma": "1"}, "sigma must be a positive"),
        ({"num_probes": 2, "lanczos_steps": 3, "grid": torch.zeros(3, 3)}, "grid must be"),
        ({"num_probes": 2, "lanczos_steps": 3, "seed": 1.5}, "seed must be an integer"),
    ],
)
def test_bad_arguments(kwargs, match):
    a = torch.eye(30, dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        spectral_density(a, **kwargs)


def test_bad_operator_deflation_and_broadening(spectral):
    with pytest.raises(ValueError, match="square"):
        spectral_density(torch.zeros(5, 4, dtype=torch.float64), num_probes=1, lanczos_steps=2)
    a, _ = spectral(bulk(30))
    with pytest.raises(ValueError, match="length 150 but the operator is 30"):
        spectral_density(
            a, num_probes=1, lanczos_steps=2, deflate=_deflation(spectral(bulk())[0], 2)
        )
    with pytest.raises(ValueError, match="whole spectrum"):
        spectral_density(a, num_probes=1, lanczos_steps=2, deflate=_deflation(a, 30))
    skew = EighResult(eigenvalues=torch.ones(2, dtype=torch.float64), Q=torch.ones(30, 2).double())
    with pytest.raises(ValueError, match="not orthonormal"):
        spectral_density(a, num_probes=1, lanczos_steps=2, deflate=skew)
    with pytest.raises(TypeError, match="EighResult"):
        spectral_density(a, num_probes=1, lanczos_steps=2, deflate=torch.eye(30)[:, :2])
    est = spectral_density(a, num_probes=2, lanczos_steps=3)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        est.broaden(sigma=0)
    with pytest.raises(ValueError, match="1-D"):
        est.broaden(grid=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="same shape"):
        est.integrate(lambda x: torch.ones(7))


def test_non_symmetric_operator_is_refused(spectral):
    # Lanczos quadrature assumes A = Aᵀ; a one-sided product must not give a density.
    a, _ = spectral(bulk())
    g = torch.Generator().manual_seed(0)
    b = a + 0.5 * a.norm() * torch.randn(a.shape, generator=g, dtype=a.dtype) / a.shape[0]
    with pytest.raises(AsymmetricOperatorError, match="spectral_density"):
        spectral_density(b, num_probes=2, lanczos_steps=5)
