"""The trace and spectral-density estimates of one analysed step (and of ``curvsketch spectrum``).

Wraps :func:`curvsketch.trace` (XTrace by default) and :func:`curvsketch.spectral_density`
(stochastic Lanczos quadrature) for a study's curvature operator: deflated by the sketched
eigenpairs only when they are Rayleigh–Ritz pairs (``hmt``, ``krylov``), products capped where
an estimator cannot use more, and the records that go into ``results.json`` and
``arrays.npz``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from curvsketch.sketch import (
    EighResult,
    SpectralDensity,
    TraceEstimate,
    spectral_density,
    trace,
)

__all__ = ["OUTLIER_FRACTION", "SpectrumEstimates", "density_histogram", "spectrum_estimates"]

#: The density record's ``outlier_mass`` is the mass at ``|λ| > OUTLIER_FRACTION · max|λ|``.
OUTLIER_FRACTION = 0.01


def density_histogram(density: SpectralDensity, bins: int = 12) -> list[tuple[float, float, float]]:
    """A coarse histogram of an estimated spectral measure: ``[(lo, hi, mass), ...]``.

    ``bins`` equal-width bins from the smallest to the largest atom (Ritz node or spike);
    ``mass`` is the estimated fraction of eigenvalues in ``[lo, hi)`` (the last bin is
    closed), summing to 1.
    """
    points, mass = density.atoms()
    points, mass = points.cpu(), mass.cpu()
    lo, hi = float(points.min()), float(points.max())
    if hi <= lo:
        return [(lo, hi, float(mass.sum()))]
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    index = torch.bucketize(points, edges[1:-1], right=True)
    counts = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, mass)
    return [(float(edges[i]), float(edges[i + 1]), float(counts[i])) for i in range(bins)]


def _finite(x: float) -> float | None:
    """``x``, or ``None`` where it is not finite (``results.json`` is strict JSON)."""
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class SpectrumEstimates:
    """Trace and spectral density of one operator, as objects and as a record.

    Attributes:
        trace: the trace estimate (``None`` when ``analysis.trace_products = 0``).
        density: the SLQ density (``None`` when ``density_probes`` or ``density_steps``
            is 0).
        record: ``{"trace": ..., "density": ...}`` for ``results.json`` (``None`` entries
            when skipped; see :mod:`curvsketch.experiments.schema`).
        arrays: ``density_grid``, ``density_values``, ``density_nodes``,
            ``density_weights`` and (when deflated) ``density_spikes``.
        timings: seconds of ``trace`` and ``density``.
        products: operator products of ``trace`` and ``density``.
    """

    trace: TraceEstimate | None
    density: SpectralDensity | None
    record: dict[str, Any]
    arrays: dict[str, torch.Tensor]
    timings: dict[str, float]
    products: dict[str, int]


def _deflating(result: EighResult | None, dim: int, room: int) -> EighResult | None:
    """``result`` if it can deflate an estimate on a ``dim``-dimensional operator: it keeps
    Rayleigh–Ritz values (``hmt``, ``krylov``; single-pass eigenvalues are not ``uᵀAu``)
    and leaves at least ``room`` dimensions."""
    if result is None or result.ritz_values is None or len(result) == 0:
        return None
    return result if dim - len(result) >= room else None


def _trace_products(method: str, wanted: int, rank: int) -> int:
    """``wanted`` products, at most what ``method`` can use on a ``rank``-dimensional space."""
    cap = {"xtrace": 2 * rank, "krylov": 2 * rank, "hutch++": 3 * rank}.get(method)
    return wanted if cap is None else min(wanted, cap)


def _outlier_mass(density: SpectralDensity) -> dict[str, Any]:
    points, _ = density.atoms()
    threshold = OUTLIER_FRACTION * float(points.abs().max())
    value, err = density.integrate(lambda x: (x.abs() > threshold).to(torch.float64))
    return {
        "threshold_fraction": OUTLIER_FRACTION,
        "threshold": threshold,
        "value": value,
        "standard_error": _finite(err),
    }


def spectrum_estimates(
    op: Any,
    analysis: Any,
    *,
    result: EighResult | None = None,
    seed: int = 0,
    block_size: int | None = None,
    exact_eigenvalues: torch.Tensor | None = None,
) -> SpectrumEstimates:
    """The trace (with a standard error) and the spectral density a study records.

    :func:`curvsketch.trace` with ``analysis.trace_products`` products
    (``analysis.trace_method``) and :func:`curvsketch.spectral_density` with
    ``analysis.density_probes`` probes of ``analysis.density_steps`` Lanczos steps (SLQ:
    Ubaru, Chen & Saad, SIMAX 2017; Ghorbani, Krishnan & Xiao, ICML 2019); either is
    skipped when its setting is 0. Both are deflated by ``result`` when it has
    Rayleigh–Ritz values (recovery ``hmt`` or ``krylov``) and leaves room for the
    estimate; a ``singlepass`` result (no Ritz values) is not used. Products are capped
    at what the estimator can use on a small operator (XTrace: ``2·(D − k)``; Lanczos
    steps: ``D``).

    Args:
        op: the symmetric curvature operator (already checked symmetric, e.g. by
            :func:`curvsketch.seigh`: the density does not check it again).
        analysis: the ``config.analysis`` section (or any object with ``trace_products``,
            ``trace_method``, ``density_probes``, ``density_steps``).
        result: the sketched eigendecomposition of ``op``, for deflation.
        seed: seed of the probes.
        block_size: columns per operator call of the trace (default ``min(64, N)``).
        exact_eigenvalues: the whole exact spectrum, when known: the record then holds the
            exact trace and the density's 1-Wasserstein distance to it.

    Returns:
        A :class:`SpectrumEstimates`.
    """
    dim = int(op.shape[0])
    record: dict[str, Any] = {"trace": None, "density": None}
    arrays: dict[str, torch.Tensor] = {}
    timings: dict[str, float] = {}
    products: dict[str, int] = {}
    exact = None if exact_eigenvalues is None else exact_eigenvalues.to(torch.float64).cpu()
    est = dens = None
    if analysis.trace_products > 0:
        method, wanted = analysis.trace_method, analysis.trace_products
        deflate = _deflating(result, dim, 1)
        k = 0 if deflate is None else len(deflate)
        n = _trace_products(method, wanted, dim - k)
        t0 = time.perf_counter()
        est = trace(op, n, method=method, seed=seed, block_size=block_size, deflate=deflate)
        timings["trace"] = time.perf_counter() - t0
        products["trace"] = est.num_products
        record["trace"] = {
            "value": est.value,
            "standard_error": _finite(est.standard_error),
            "num_products": est.num_products,
            "method": est.method,
            "deflated": est.deflated,
        }
        if exact is not None:
            record["trace"]["exact"] = float(exact.sum())
    if analysis.density_probes > 0 and analysis.density_steps > 0:
        deflate = _deflating(result, dim, 1)
        t0 = time.perf_counter()
        # check_symmetry=False: the sketch (seigh) has checked this operator already
        dens = spectral_density(
            op,
            num_probes=analysis.density_probes,
            lanczos_steps=min(analysis.density_steps, dim),
            deflate=deflate,
            seed=seed,
            check_symmetry=False,
        )
        timings["density"] = time.perf_counter() - t0
        products["density"] = dens.num_products
        points, _ = dens.atoms()
        rec: dict[str, Any] = {
            "num_probes": dens.num_probes,
            "lanczos_steps": dens.lanczos_steps,
            "num_products": dens.num_products,
            "deflated": int(dens.spikes.shape[0]),
            "sigma": dens.sigma,
            "grid": {
                "min": float(dens.grid[0]),
                "max": float(dens.grid[-1]),
                "points": int(dens.grid.shape[0]),
            },
            "range": [float(points.min()), float(points.max())],
            "moments": [{"value": v, "standard_error": _finite(e)} for v, e in dens.moments(2)],
            "outlier_mass": _outlier_mass(dens),
        }
        if exact is not None:
            rec["wasserstein_exact"] = dens.wasserstein(exact)
        record["density"] = rec
        arrays.update(
            density_grid=dens.grid,
            density_values=dens.values,
            density_nodes=dens.nodes,
            density_weights=dens.weights,
        )
        if dens.spikes.numel():
            arrays["density_spikes"] = dens.spikes
    return SpectrumEstimates(est, dens, record, arrays, timings, products)
