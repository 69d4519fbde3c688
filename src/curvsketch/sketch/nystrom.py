"""Nyström recovery for positive semi-definite operators (a GGN): ``"nystrom"``.

Tropp, Yurtsever, Udell, Cevher, "Fixed-rank approximation of a positive-semidefinite
matrix from streaming data", NeurIPS 2017, Alg. 3, with its stabilising shift: ``outer``
products of the test vectors ``Ψ[:outer]``, no second pass. A clearly indefinite operator
(a Hessian) is refused with :class:`IndefiniteOperatorError`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.factors import Factors
from curvsketch.sketch.measure import measure_outer
from curvsketch.sketch.noise import STREAM_PSI
from curvsketch.sketch.plan import SketchPlan
from curvsketch.sketch.timing import stage_timer

__all__ = ["PSD_TOLERANCE", "IndefiniteOperatorError", "recover_nystrom", "run"]

#: Nyström refuses operators whose ``ΩᵀHΩ`` has an eigenvalue below ``-PSD_TOLERANCE``
#: times its largest ``|eigenvalue|``.
PSD_TOLERANCE = 1e-3


class IndefiniteOperatorError(ValueError):
    """The Nyström recovery met a clearly indefinite operator."""


def run(op: Any, plan: SketchPlan, progress: Progress | None, timings: dict[str, float]) -> Factors:
    """Stabilised Nyström from the ``outer`` products ``H Ψ[:outer]ᵀ`` (:func:`recover_nystrom`)."""
    assert plan.dtype is not None and plan.device is not None
    psi = plan.test_operator(STREAM_PSI, plan.outer)
    with stage_timer(timings, "measure"):
        y = measure_outer(
            op,
            psi,
            plan.outer,
            block_size=plan.block_size,
            dtype=plan.dtype,
            device=plan.device,
            progress=progress,
        )
    omega = psi.columns(0, plan.outer, dtype=plan.dtype, device=plan.device)
    return recover_nystrom(y, omega, timings=timings)


def recover_nystrom(
    y: torch.Tensor,
    omega: torch.Tensor,
    *,
    psd_tolerance: float = PSD_TOLERANCE,
    timings: dict[str, float] | None = None,
) -> Factors:
    """Stabilised Nyström approximation of a PSD operator (Tropp, Yurtsever, Udell,
    Cevher 2017, "Fixed-rank approximation of a positive-semidefinite matrix from streaming
    data", NeurIPS, Alg. 3).

    ``Y_ν = Y + νΩ`` with ``ν = √D · eps(‖Y‖_F)`` (the Frobenius norm bounds the paper's
    spectral norm, so the shift is at least as large and as stable); ``B = ΩᵀY_ν = LLᵀ``;
    ``F = Y_ν L⁻ᵀ = Q_F R_F``; ``R_F = W Σ Xᵀ``; ``H ≈ (Q_F W) max(Σ² − ν, 0) (Q_F W)ᵀ``.

    Args:
        y: ``H Ω``, shape ``(D, o)``.
        omega: the test vectors ``Ω`` as columns, ``(D, o)``.
        psd_tolerance: refuse when ``λ_min(ΩᵀHΩ) < −psd_tolerance · max|λ(ΩᵀHΩ)|``.
        timings: optional dict; adds ``core``, ``qr``, ``eigh`` and ``eigvec`` seconds.

    Returns:
        :class:`Factors` ``(λ descending, Q_F, W)``.

    Raises:
        IndefiniteOperatorError: the operator is clearly not positive semi-definite.
    """
    dim = y.shape[0]
    hint = (
        "recovery='nystrom' needs a positive semi-definite operator (e.g. a GGN); "
        "use recovery='singlepass' or recovery='hmt' for indefinite ones (Hessians)"
    )
    with stage_timer(timings, "core"):
        b0 = omega.T @ y
        b0 = (b0 + b0.T) / 2
        spectrum = torch.linalg.eigvalsh(b0)
        scale = float(spectrum.abs().max())
        if float(spectrum[0]) < -psd_tolerance * scale:
            raise IndefiniteOperatorError(
                f"the operator is indefinite: ΩᵀHΩ has eigenvalue {float(spectrum[0]):.3g} "
                f"against a largest |eigenvalue| of {scale:.3g}; {hint}"
            )
        norm = float(torch.linalg.matrix_norm(y))
        nu = math.sqrt(dim) * _spacing(norm, y.dtype)
        y_nu = y + nu * omega
        b = b0 + nu * (omega.T @ omega)
        b = (b + b.T) / 2
        chol, info = torch.linalg.cholesky_ex(b)
        if int(info) != 0:
            raise IndefiniteOperatorError(f"Cholesky of the shifted ΩᵀHΩ failed; {hint}")
        f = torch.linalg.solve_triangular(chol.T, y_nu, upper=True, left=False)  # Y_ν L⁻ᵀ
        del y_nu
    with stage_timer(timings, "qr"):
        q, r = torch.linalg.qr(f, mode="reduced")
        del f
    with stage_timer(timings, "eigh"):
        w, sigma, _ = torch.linalg.svd(r)
    with stage_timer(timings, "eigvec"):
        values = torch.clamp(sigma**2 - nu, min=0.0)
    return Factors(values, q, w)


def _spacing(x: float, dtype: torch.dtype) -> float:
    """Distance from ``x`` to the next larger number representable in ``dtype``."""
    t = torch.tensor(x, dtype=dtype)
    return float(torch.nextafter(t, torch.tensor(math.inf, dtype=dtype)) - t)
