"""Trace and spectral density of one analysed state (issue 16, item 4)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from curvsketch import seigh
from curvsketch.experiments.config import AnalysisConfig
from curvsketch.experiments.spectrum_estimates import density_histogram, spectrum_estimates

D = 80


def _matrix(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric D x D matrix with a bulk near 0 and 6 outliers, and its eigenvalues."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    lam = torch.cat(
        [
            torch.tensor([9.0, 7.0, 5.0, -3.0, 2.5, 2.0], dtype=torch.float64),
            0.05 * torch.randn(D - 6, generator=g, dtype=torch.float64),
        ]
    )
    return (q * lam) @ q.T, lam


def _analysis(**kw) -> AnalysisConfig:
    return dataclasses.replace(
        AnalysisConfig(), trace_products=40, density_probes=6, density_steps=20, **kw
    )


def test_estimates_without_deflation_for_a_singlepass_result():
    A, lam = _matrix()
    res = seigh(A, 6, 12, recovery="singlepass", seed=0)
    assert res.ritz_values is None
    spec = spectrum_estimates(A, _analysis(), result=res, seed=0, exact_eigenvalues=lam)
    tr, de = spec.record["trace"], spec.record["density"]
    assert tr["deflated"] == 0 and de["deflated"] == 0
    assert tr["exact"] == pytest.approx(float(lam.sum()))
    assert abs(tr["value"] - tr["exact"]) < 4 * tr["standard_error"]
    assert spec.products == {"trace": 40, "density": 6 * 20}
    assert set(spec.timings) == {"trace", "density"}
    # the density is a probability measure; its broadened form integrates to ~1 on its grid
    grid, values = spec.arrays["density_grid"], spec.arrays["density_values"]
    assert float(torch.trapezoid(values, grid)) == pytest.approx(1.0, abs=1e-3)
    assert spec.arrays["density_weights"].sum(1).tolist() == pytest.approx([1.0] * 6)
    assert spec.arrays["density_nodes"].shape == (6, 20)
    assert "density_spikes" not in spec.arrays
    assert de["grid"]["points"] == grid.shape[0]
    m1 = de["moments"][0]
    assert abs(m1["value"] - float(lam.mean())) < 4 * m1["standard_error"]
    assert 0 < de["outlier_mass"]["value"] < 1
    assert de["wasserstein_exact"] < 0.5


@pytest.mark.parametrize("recovery", ["hmt", "krylov"])
def test_ritz_results_deflate_trace_and_density(recovery):
    A, lam = _matrix(1)
    inner = None if recovery == "hmt" else 12
    res = seigh(A, 6, inner, recovery=recovery, seed=0)
    spec = spectrum_estimates(A, _analysis(), result=res, seed=0, exact_eigenvalues=lam)
    tr, de = spec.record["trace"], spec.record["density"]
    assert tr["deflated"] == 6 and de["deflated"] == 6
    assert abs(tr["value"] - float(lam.sum())) < 4 * tr["standard_error"]
    # the outliers are known: what is left is the small bulk, so Hutchinson's error bar
    # (XTrace finds 6 outliers by itself) shrinks by far
    hutch = _analysis(trace_method="hutchinson")
    plain = spectrum_estimates(A, hutch, seed=0).record["trace"]
    deflated = spectrum_estimates(A, hutch, result=res, seed=0).record["trace"]
    assert plain["deflated"] == 0 and deflated["deflated"] == 6
    assert deflated["standard_error"] < plain["standard_error"] / 10
    assert abs(deflated["value"] - float(lam.sum())) < 4 * deflated["standard_error"]
    assert spec.arrays["density_spikes"].shape == (6,)
    # the spikes are the sketch's Rayleigh-Ritz values (its eigenvalues' best estimates)
    assert sorted(spec.arrays["density_spikes"].tolist()) == pytest.approx(
        sorted(res.ritz_values.tolist()), abs=1e-12
    )
    assert spec.density.integrate(lambda x: torch.ones_like(x))[0] == pytest.approx(1.0)


def test_zero_settings_skip_the_estimates():
    A, _ = _matrix()
    spec = spectrum_estimates(
        A, dataclasses.replace(AnalysisConfig(), trace_products=0, density_probes=0)
    )
    assert spec.record == {"trace": None, "density": None}
    assert spec.arrays == {} and spec.products == {} and spec.timings == {}
    only_trace = dataclasses.replace(AnalysisConfig(), density_steps=0, trace_products=10)
    spec = spectrum_estimates(A, only_trace)
    assert spec.record["density"] is None and spec.record["trace"]["num_products"] == 10


@pytest.mark.parametrize("method", ["xtrace", "krylov"])
def test_products_are_capped_on_small_operators(method):
    """More products than XTrace or Krylov can use on D dimensions (room for a Krylov
    space of all D: exact), more steps than D: capped."""
    A, lam = _matrix()
    a = _analysis(trace_method=method)
    a = dataclasses.replace(a, trace_products=10 * D, density_steps=D + 5, density_probes=2)
    spec = spectrum_estimates(A, a)
    assert spec.record["trace"]["num_products"] == 2 * D
    assert spec.record["trace"]["value"] == pytest.approx(float(lam.sum()), abs=1e-8)
    assert spec.density.lanczos_steps == D


def test_density_histogram_sums_to_one():
    A, _ = _matrix()
    spec = spectrum_estimates(A, _analysis())
    bins = density_histogram(spec.density, 7)
    assert len(bins) == 7
    assert sum(m for _, _, m in bins) == pytest.approx(1.0)
    assert all(lo < hi for lo, hi, _ in bins)
    assert bins[0][0] == pytest.approx(spec.record["density"]["range"][0])
    assert bins[-1][1] == pytest.approx(spec.record["density"]["range"][1])
