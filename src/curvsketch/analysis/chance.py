"""Chance levels: what the metrics give for random subspaces and random masks.

Which results are exact and which are limits:

* **Exact, any D** (random subspace, Haar-distributed, against any fixed subspace; or a
  uniformly random k-mask against any fixed orthonormal ``U_k``): ``E[overlap] = k/D``,
  since ``E[QQᵀ] = (k/D) I`` (Fernandez et al., TMLR 2025, §2); hence
  ``E[projection_f²] = k (1 − k/D)`` because ``projection_f² = k (1 − overlap)``.
* **Exact, any D**: the variance of the overlap of a Haar subspace against a fixed one,
  ``2 (D − k)² / (D² (D − 1)(D + 2))`` (from the isotropic fourth moment of a random
  projection); of a random k-mask against a fixed k-mask (hypergeometric); and of a
  random k-mask against a fixed ``U_k`` (sampling without replacement from its row norms).
* **Exact, any D**: every metric for a random k-mask against a fixed k-mask, because all
  of them depend only on the hypergeometric intersection size ``m``
  (m angles 0, k − m angles π/2).
* **Limit D → ∞ at fixed ρ = k/D** for two random subspaces (or a random subspace and a
  mask): ``cos² θ`` follows Wachter's law (Wachter 1980; Collins 2005, Probab. Theory
  Relat. Fields 133), the density ``√(x(λ₊ − x)) / (2πρ x(1 − x))`` on ``[0, λ₊]``,
  ``λ₊ = 4ρ(1 − ρ)``, plus an atom at 1 of mass ``(2ρ − 1)/ρ`` when ``ρ > 1/2``. The
  Frobenius-type metrics divided by their maxima converge to functions of ρ; the max- and
  product-type ones (chordal_2, projection_2, fubini_study) go to their maxima.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

from curvsketch.analysis.grassmann import SIMILARITY_KEYS, distance_maxima
from curvsketch.analysis.rows import BasisLike, basis_shape, row_norms_sq

__all__ = [
    "chance_overlap",
    "chance_overlap_std",
    "expected_mask_metrics",
    "limit_random_metrics",
    "random_mask_overlap_std",
]


def _check_kd(k: int, D: int) -> None:
    for name, v in (("k", k), ("D", D)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"'{name}' must be an int, got {type(v).__name__}")
    if not 1 <= k <= D:
        raise ValueError(f"need 1 ≤ k ≤ D, got k = {k}, D = {D}")


def chance_overlap(k: int, D: int) -> float:
    """Expected overlap of a random k-subspace or random k-mask with any fixed one: ``k/D``.

    Exact for every D (Fernandez et al., TMLR 2025, §2).
    """
    _check_kd(k, D)
    return k / D


def chance_overlap_std(k: int, D: int, pair: Literal["subspace", "mask"] = "subspace") -> float:
    """Exact standard deviation of the overlap of a random pair.

    Args:
        k: Dimension / mask size.
        D: Ambient dimension (number of parameters).
        pair: ``"subspace"``: a Haar-random k-subspace against any fixed k-subspace
            (or a fixed k-mask): ``Var = 2 (D − k)² / (D² (D − 1)(D + 2))``.
            ``"mask"``: a uniformly random k-mask against a fixed k-mask, where
            ``k · overlap`` is hypergeometric: ``Var = ρ (1 − ρ)(D − k) / (k (D − 1))``.

    Returns:
        The standard deviation (0 when D = 1).
    """
    _check_kd(k, D)
    if D == 1:
        return 0.0
    if pair == "subspace":
        var = 2.0 * (D - k) ** 2 / (D**2 * (D - 1) * (D + 2))
    elif pair == "mask":
        rho = k / D
        var = rho * (1.0 - rho) * (D - k) / (k * (D - 1))
    else:
        raise ValueError(f"'pair' must be 'subspace' or 'mask', got {pair!r}")
    return math.sqrt(var)


def random_mask_overlap_std(U: BasisLike, k: int, *, block_rows: int | None = None) -> float:
    """Exact std of the overlap of a uniformly random k-mask with ``U[:, :k]``.

    The overlap is the mean of ``r_i = ‖U[i, :k]‖²`` over k indices drawn without
    replacement, so ``Var = σ_r² / k · (D − k)/(D − 1)`` with ``σ_r²`` the population
    variance of r. Reads all rows of ``U`` once (in blocks).

    Args:
        U: ``(D, o)`` orthonormal eigenvectors, ``o ≥ k``; dense or factored.
        k: Mask size.
        block_rows: Rows per streamed block.

    Returns:
        The standard deviation.
    """
    D, o = basis_shape(U, "U")
    _check_kd(k, D)
    if k > o:
        raise ValueError(f"'k' = {k} exceeds the {o} columns of U")
    if D == 1:
        return 0.0
    r = row_norms_sq(U, k, block_rows=block_rows)
    var = float(r.var(correction=0)) / k * (D - k) / (D - 1)
    return math.sqrt(max(var, 0.0))


def expected_mask_metrics(k: int, D: int) -> dict[str, float]:
    """Exact expectations of every metric for a uniformly random k-mask vs a fixed k-mask.

    The intersection size ``m`` is hypergeometric (population D, k marked, k drawn); the
    principal angles are m zeros and ``k − m`` right angles, so each metric is a function
    of m and its expectation a finite sum.

    Returns:
        Dict with the keys of :func:`~curvsketch.analysis.grassmann.grassmann_metrics`
        plus ``iou`` (expected ``m / (2k − m)``).
    """
    _check_kd(k, D)
    m = torch.arange(max(0, 2 * k - D), k + 1, dtype=torch.float64)
    kk, DD = float(k), float(D)

    def lchoose(n: float | torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        n = torch.as_tensor(n, dtype=torch.float64)
        return torch.lgamma(n + 1) - torch.lgamma(r + 1) - torch.lgamma(n - r + 1)

    logp = lchoose(kk, m) + lchoose(DD - kk, kk - m) - lchoose(DD, torch.tensor(kk))
    p = torch.exp(logp)
    p = p / p.sum()
    apart = (m < k).to(torch.float64)
    values = {
        "geodesic": math.pi / 2 * torch.sqrt(kk - m),
        "chordal_2": math.sqrt(2.0) * apart,
        "chordal_f": torch.sqrt(2.0 * (kk - m)),
        "projection_2": apart,
        "projection_f": torch.sqrt(kk - m),
        "fubini_study": math.pi / 2 * apart,
        "overlap": m / kk,
        "iou": m / (2 * kk - m),
    }
    out = {key: float((p * v).sum()) for key, v in values.items()}
    for key, top in distance_maxima(k).items():
        out[f"{key}_sim"] = 1.0 - out[key] / top
    return out


def _wachter_mean(rho: float, fn: Callable[[torch.Tensor], torch.Tensor], n: int) -> float:
    """``E[fn(x)]`` for x = cos² θ under Wachter's limit law at ratio ρ (midpoint rule in
    t with ``x = λ₊(1 − cos t)/2``, where the integrand is smooth)."""
    lam = 4.0 * rho * (1.0 - rho)
    t = (torch.arange(n, dtype=torch.float64) + 0.5) * (math.pi / n)
    x = lam * (1.0 - torch.cos(t)) / 2.0
    w = (lam / 2.0) ** 2 * torch.sin(t).square() / (2.0 * math.pi * x * (1.0 - x)) * (math.pi / n)
    cont = float((w * fn(x)).sum())
    atom = max(2.0 * rho - 1.0, 0.0) * float(fn(torch.ones(1, dtype=torch.float64))[0])
    return (cont + atom) / rho


def limit_random_metrics(rho: float, *, n_nodes: int = 4000) -> dict[str, float]:
    """Limits of the normalised metrics for two random subspaces as D → ∞, k/D → ρ.

    From Wachter's law of ``cos² θ`` (see the module docstring). By concentration,
    ``d/max`` of the Frobenius-type distances tends to ``√E[f(θ)]/√(scale)``:
    ``geodesic/((π/2)√k) → √E[θ²]/(π/2)``, ``chordal_f/√(2k) → √E[2 − 2cos θ]/√2``,
    ``projection_f/√k → √(1 − ρ)``; the max/product types tend to their maxima
    (similarity 0) for ``0 < ρ < 1``; ``overlap → ρ`` (exact for every D).

    Args:
        rho: ``k/D`` in ``(0, 1]``.
        n_nodes: Quadrature nodes (the integrand is smooth: 4000 gives ~1e-12).

    Returns:
        Dict with ``overlap`` and the six ``*_sim`` keys of
        :func:`~curvsketch.analysis.grassmann.grassmann_metrics`.
    """
    rho = float(rho)
    if not 0.0 < rho <= 1.0:
        raise ValueError(f"'rho' must be in (0, 1], got {rho}")
    if rho == 1.0:  # both subspaces are the whole space
        return {"overlap": 1.0, **dict.fromkeys(SIMILARITY_KEYS, 1.0)}

    def theta(x: torch.Tensor) -> torch.Tensor:
        return torch.arccos(x.clamp(0.0, 1.0).sqrt())

    e_theta2 = _wachter_mean(rho, lambda x: theta(x).square(), n_nodes)
    e_chord2 = _wachter_mean(rho, lambda x: 2.0 - 2.0 * x.clamp(0.0, 1.0).sqrt(), n_nodes)
    return {
        "overlap": rho,
        "geodesic_sim": 1.0 - math.sqrt(e_theta2) / (math.pi / 2),
        "chordal_2_sim": 0.0,
        "chordal_f_sim": 1.0 - math.sqrt(e_chord2) / math.sqrt(2.0),
        "projection_2_sim": 0.0,
        "projection_f_sim": 1.0 - math.sqrt(1.0 - rho),
        "fubini_study_sim": 0.0,
    }
