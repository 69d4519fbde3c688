"""XTrace: the exchangeable trace estimator with its own error estimate.

Epperly, Tropp & Webber, "XTrace: Making the most of every sample in stochastic trace
estimation", SIAM J. Matrix Anal. Appl. 45(1), 2024, §2–3: the exchangeable version of
Hutch++, where each of ``m = N/2`` test vectors serves both the low-rank basis (of the other
``m − 1``) and the Hutchinson correction, averaged over the ``m`` leave-one-out choices; its
own error estimate is the spread of those ``m`` estimates. The ``m`` leave-one-out bases are
downdated from one QR (``Q₍ᵢ₎Q₍ᵢ₎ᵀ = Q(I − sᵢsᵢᵀ)Qᵀ`` with ``sᵢ ∝ R⁻ᵀeᵢ``), in ``m × m``
matrix products: no ``m`` separate QRs.

Test vectors (``probes``):

* ``"sphere"``: the paper's recommended "improved" ones (§2.2): uniform on the sphere of
  radius ``√D``, and each residual probe ``(I − Q₍ᵢ₎Q₍ᵢ₎ᵀ)ωᵢ`` rescaled to the norm its
  subspace's dimension calls for;
* ``"rademacher"``: random signs with the plain residual term ``vᵢᵀAvᵢ`` (unbiased, as
  ``E[ωωᵀ] = I`` and ``Q₍ᵢ₎`` does not depend on ``ωᵢ``). Hutchinson's variance with
  Rademacher probes drops the diagonal's share, ``2(‖B‖_F² − Σ bⱼⱼ²)`` against ``2‖B‖_F²``
  for Gaussian ones, which pays on operators with a heavy diagonal such as network
  Hessians.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from curvsketch.sketch.noise import GaussianNoise, RademacherNoise

__all__ = [
    "XTRACE_STREAM",
    "leave_one_out_directions",
    "xtrace",
    "xtrace_estimates",
    "xtrace_vectors",
]

#: Random stream of the test vectors under the user seed.
XTRACE_STREAM = "trace.xtrace"


def xtrace_vectors(target: Any, m: int, seed: int, probes: str) -> torch.Tensor:
    """``"sphere"``: the improved test vectors ``√n · Pg/‖Pg‖`` for Gaussian ``g``,
    ``n = D − k``; ``"rademacher"``: ``Pz`` for random signs ``z`` (``P = I − UUᵀ`` of a
    deflation, else ``I``)."""
    op = target.op
    noise = RademacherNoise if probes == "rademacher" else GaussianNoise
    g = noise(m, target.dim, seed, XTRACE_STREAM)
    omega = target.project(g.columns(0, m, dtype=op.dtype, device=op.device).contiguous())
    if probes == "rademacher":
        return omega
    return omega * (math.sqrt(target.rank) / omega.norm(dim=0))


def leave_one_out_directions(r: torch.Tensor) -> torch.Tensor:
    """Columns ``sᵢ = R⁻ᵀeᵢ / ‖R⁻ᵀeᵢ‖`` (Epperly, Tropp & Webber 2024, §2).

    ``range(Y₋ᵢ) = Q·(sᵢ)⊥`` for ``Y = QR``. Computed from an SVD ``R = UΣVᵀ`` as the
    normalised columns of ``U·τ/max(Σ, τ)·Vᵀ ∝ R⁻ᵀ`` with a rounding floor ``τ``: for a
    rank-deficient ``Y`` (an operator of rank ``< m``) the removed direction is then one of
    ``Q``'s rounding directions, as the exact ``Q₍ᵢ₎`` (which loses nothing) would have it,
    instead of an overflow.
    """
    u, sig, vh = torch.linalg.svd(r)
    m = int(r.shape[0])
    tau = max(float(sig.max()) * m * torch.finfo(torch.float64).eps, torch.finfo(r.dtype).tiny)
    m_inv = (u * (tau / sig.clamp_min(tau))) @ vh
    return m_inv / m_inv.norm(dim=0)


def xtrace_estimates(
    omega: torch.Tensor,
    y: torch.Tensor,
    q: torch.Tensor,
    r: torch.Tensor,
    z: torch.Tensor,
    rank: int,
    normalise: bool = True,
) -> torch.Tensor:
    """The ``m`` leave-one-out estimates of XTrace, each in ``O(m²)`` (float64, ``(m,)``).

    For test vectors ``Ω`` (``D × m``), ``Y = AΩ = QR``, ``Z = AQ`` and the dimension
    ``rank`` the vectors live in, estimate ``i`` is (Epperly, Tropp & Webber 2024, §2)

        tr(Q₍ᵢ₎ᵀAQ₍ᵢ₎) + ρᵢ vᵢᵀAvᵢ,   vᵢ = (I − Q₍ᵢ₎Q₍ᵢ₎ᵀ)ωᵢ,   ρᵢ = (rank − m + 1)/‖vᵢ‖²,

    with ``Q₍ᵢ₎Q₍ᵢ₎ᵀ = Q(I − sᵢsᵢᵀ)Qᵀ``: ``tr(Q₍ᵢ₎ᵀAQ₍ᵢ₎) = tr H − sᵢᵀHsᵢ`` (``H = QᵀZ``),
    ``vᵢ = ωᵢ − Qcᵢ``, ``Avᵢ = yᵢ − Zcᵢ`` with ``cᵢ = (I − sᵢsᵢᵀ)Qᵀωᵢ``, so
    ``vᵢᵀAvᵢ = ωᵢᵀyᵢ − (Zᵀωᵢ)ᵀcᵢ − cᵢᵀRᵢ + cᵢᵀHcᵢ`` and ``‖vᵢ‖² = ‖ωᵢ‖² − ‖Qᵀωᵢ‖² +
    (sᵢᵀQᵀωᵢ)²``. Only ``A`` from the right is used (no symmetry assumed). With
    ``normalise=False`` (Rademacher test vectors) ``ρᵢ = 1``.
    """
    f64 = torch.float64
    m = int(omega.shape[1])
    w = (q.T @ omega).to(f64)
    t = (z.T @ omega).to(f64)
    h = (q.T @ z).to(f64)
    rr = r.to(f64)
    s = leave_one_out_directions(rr)
    sw = (s * w).sum(0)
    c = w - s * sw
    quad = (omega * y).sum(0, dtype=f64) - (t * c).sum(0) - (rr * c).sum(0) + (c * (h @ c)).sum(0)
    if normalise:
        norm2 = omega.square().sum(0, dtype=f64) - w.square().sum(0) + sw.square()
        scale = (rank - m + 1) / norm2
    else:
        scale = torch.ones_like(quad)
    return torch.trace(h) - (s * (h @ s)).sum(0) + scale * quad


def xtrace(target: Any, num_products: int, seed: int, probes: str) -> tuple[float, float, int]:
    """XTrace from ``m = ⌊N/2⌋`` test vectors: ``(estimate, standard error, products)``.

    ``target`` is :func:`curvsketch.sketch.trace.trace`'s operator (``A`` or ``PAP`` of a
    deflation) with ``op``, ``dim``, ``rank``, ``project`` and ``measure``; ``probes``
    ``"sphere"`` or ``"rademacher"`` (module docstring). Call it through ``trace``.
    """
    m = num_products // 2
    omega = xtrace_vectors(target, m, seed, probes)
    y = target.measure(lambda a, b: omega[:, a:b], m, "op @ omega (xtrace test vectors)")
    q, r = torch.linalg.qr(y)
    z = target.measure(lambda a, b: q[:, a:b], m, "op @ Q (xtrace basis)")
    estimates = xtrace_estimates(omega, y, q, r, z, target.rank, probes == "sphere")
    n = int(estimates.shape[0])
    err = float(estimates.std() / math.sqrt(n)) if n > 1 else math.inf
    mean = float(estimates.mean())
    return mean, err, 2 * m
