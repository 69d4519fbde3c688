"""What the recoveries share: the :class:`Factors` they return, the :class:`Recovery`
interface, the small dense linear algebra of the core, and the one place where factors
become an :class:`~curvsketch.sketch.result.EighResult` (:func:`to_result`).

All of it is pure tensor code: nothing here touches the operator. Test operators are
applied to whole blocks of ``Q``'s columns (batched transforms), never one row or column at
a time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Protocol

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.noise import NoiseOperator
from curvsketch.sketch.plan import SketchPlan
from curvsketch.sketch.result import EighResult
from curvsketch.sketch.timing import STAGES, split_threads, stage_timer

__all__ = [
    "Factors",
    "Recovery",
    "apply_test_operators",
    "core_solve",
    "eigh_by_magnitude",
    "eigh_sorted",
    "orthonormal_basis",
    "sort_by_magnitude",
    "to_result",
    "which_order",
]


class Factors(NamedTuple):
    """A recovered decomposition ``basis @ rot`` with ``values`` (sorted).

    ``ritz`` and ``residuals`` (HMT and Krylov only): the Rayleigh–Ritz values and the
    residual norms ``‖H x − θ x‖`` of the Ritz vectors plus the rounding floor of
    :func:`curvsketch.sketch.residuals.residual_floor`, in the order of ``values``.
    """

    values: torch.Tensor
    basis: torch.Tensor
    rot: torch.Tensor
    ritz: torch.Tensor | None = None
    residuals: torch.Tensor | None = None


class Recovery(Protocol):
    """One recovery of :func:`curvsketch.sketch.seigh`: products of ``op`` as the ``plan``
    says, counted on ``progress``, stage seconds added to ``timings``, factors back."""

    def __call__(
        self, op: Any, plan: SketchPlan, progress: Progress | None, timings: dict[str, float]
    ) -> Factors: ...


def to_result(plan: SketchPlan, factors: Factors, timings: dict[str, float]) -> EighResult:
    """The :class:`EighResult` of a plan and its factors (every stage of :data:`STAGES` timed,
    0.0 where it did not run): the one place a result of ``seigh`` is assembled."""
    for stage in STAGES:
        timings.setdefault(stage, 0.0)
    return EighResult(
        eigenvalues=factors.values,
        Q=factors.basis,
        V=factors.rot,
        recovery=plan.recovery,
        noise=plan.noise,
        seed=plan.seed,
        outer=plan.outer,
        inner=plan.inner,
        power_iters=plan.power_iters,
        num_products=plan.num_products,
        timings=timings,
        ritz_values=factors.ritz,
        residual_norms=factors.residuals,
        which=plan.which,
    )


def which_order(values: torch.Tensor, which: str) -> torch.Tensor:
    """Indices that sort ``values`` as ``which`` asks (stable): ``"LM"`` by ``|λ|``
    descending, ``"LA"`` descending, ``"SA"`` ascending."""
    if which == "LM":
        return torch.argsort(values.abs(), descending=True, stable=True)
    return torch.argsort(values, descending=which == "LA", stable=True)


def sort_by_magnitude(
    values: torch.Tensor, vectors: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort eigenpairs by ``|λ|`` descending (stable), keeping signs; columns follow."""
    order = torch.argsort(values.abs(), descending=True, stable=True)
    return values[order], vectors[:, order]


def eigh_by_magnitude(
    matrix: torch.Tensor, timings: dict[str, float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigendecomposition of the symmetric part of a small core matrix, sorted by ``|λ|``.

    Args:
        matrix: ``(o, o)``; only ``(matrix + matrixᵀ)/2`` is decomposed.
        timings: optional dict; adds ``eigh`` and ``eigvec`` (the sort) seconds.

    Returns:
        ``(λ, W)`` sorted by ``|λ|`` descending, signs kept.
    """
    with stage_timer(timings, "eigh"):
        values, w = torch.linalg.eigh((matrix + matrix.T) / 2)
    with stage_timer(timings, "eigvec"):
        values, w = sort_by_magnitude(values, w)
    return values, w


def eigh_sorted(
    matrix: torch.Tensor, which: str, timings: dict[str, float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`eigh_by_magnitude` for ``which="LM"``; else sorted by :func:`which_order`."""
    if which == "LM":
        return eigh_by_magnitude(matrix, timings)
    with stage_timer(timings, "eigh"):
        values, w = torch.linalg.eigh((matrix + matrix.T) / 2)
    with stage_timer(timings, "eigvec"):
        order = which_order(values, which)
        values, w = values[order], w[:, order]
    return values, w


def orthonormal_basis(y: torch.Tensor) -> torch.Tensor:
    """Thin QR ``Y = QR``; return ``Q`` (same shape as ``Y``, orthonormal columns)."""
    return torch.linalg.qr(y, mode="reduced").Q


def core_solve(left: torch.Tensor, z: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Return ``C = left⁺ Z (right⁺)ᵀ`` by least squares, without forming a pseudo-inverse.

    With ``left = QₗRₗ`` and ``right = QᵣRᵣ`` (thin QR, full column rank),
    ``left⁺ = Rₗ⁻¹Qₗᵀ`` and ``(right⁺)ᵀ = ((right)ᵀ)⁺ = Qᵣ Rᵣ⁻ᵀ``, so
    ``C = Rₗ⁻¹ (Qₗᵀ Z Qᵣ) Rᵣ⁻ᵀ`` with two triangular solves (the core solve of Tropp,
    Yurtsever, Udell, Cevher 2019, ``C = (ΦQ) \\ Z / ((ΨP)ᵀ)`` in MATLAB notation).

    Args:
        left: ``ΦQ``, shape ``(s, o)``, ``s >= o``.
        z: the core sketch ``Z = Φ A Ψᵀ``, shape ``(s, t)``.
        right: ``ΨP``, shape ``(t, p)``, ``t >= p``.

    Returns:
        ``(o, p)`` tensor.
    """
    q_l, r_l = torch.linalg.qr(left, mode="reduced")
    q_r, r_r = torch.linalg.qr(right, mode="reduced")
    middle = q_l.T @ z @ q_r
    x = torch.linalg.solve_triangular(r_l, middle, upper=True)  # Rₗ⁻¹ M
    return torch.linalg.solve_triangular(r_r, x.T, upper=True).T  # (Rᵣ⁻¹ Xᵀ)ᵀ = X Rᵣ⁻ᵀ


def apply_test_operators(
    phi: NoiseOperator, psi: NoiseOperator, q: torch.Tensor, t: int, *, block_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``ΦQ`` and ``Ψ[:t]Q``, the two test-operator products of the single-pass core.

    On a CPU with ``n ≥ 2`` torch threads the two run side by side, each on ``n/2``
    threads: the batched FFTs and gathers of an SSRFT gain less from a second thread than
    two independent products on one thread each (measured:
    benchmarks/results/docstring_timings.md). Elsewhere they run one after the other. The
    numbers are the same either way.
    """
    if q.device.type != "cpu" or torch.get_num_threads() < 2:
        return phi.matmul(q, block_size=block_size), psi.matmul(q, 0, t, block_size=block_size)
    with split_threads(2), ThreadPoolExecutor(2) as pool:
        left = pool.submit(phi.matmul, q, block_size=block_size)
        right = pool.submit(psi.matmul, q, 0, t, block_size=block_size)
        return left.result(), right.result()
