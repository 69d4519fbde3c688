"""Two-pass recovery (``"hmt"``): range finder, subspace iterations, Rayleigh–Ritz.

Halko, Martinsson, Tropp, "Finding structure with randomness", SIAM Review 53(2), 2011,
Alg. 4.1/4.4 + 5.3: ``Q = orth(H Ψ[:o]ᵀ)``, ``power_iters`` times ``Q ← orth(H Q)``, then
the Rayleigh–Ritz matrix ``QᵀHQ``; the residual of each Ritz pair gives an interval that
holds an eigenvalue and a corrected eigenvalue ``±‖Hu‖`` (:func:`recover_hmt`).

Which eigenvalues (``which``). A range finder captures the eigenvectors of the largest
``|λ|`` (``"LM"``). Selecting the largest or smallest Ritz values of that basis would be
wrong whenever the wanted end is not among the largest ``|λ|`` (the most negative
eigenvalues of a network Hessian are small next to its top ones): the basis does not hold
them. So ``"LA"`` and ``"SA"`` sketch a shifted operator whose largest magnitudes *are* the
wanted end, and shift back:

* ``"LA"``: ``H − cI`` with ``c`` at or below ``λ_min``, so ``H − cI ⪰ 0`` and its largest
  eigenvalues, in magnitude, are the largest algebraic ones of ``H``;
* ``"SA"``: ``cI − H`` with ``c`` at or above ``λ_max``, so its largest magnitudes are the
  smallest algebraic eigenvalues of ``H``.

It suffices that ``c`` lies beyond the midpoint between the far end and the ``o``-th wanted
eigenvalue (then every unwanted eigenvalue has a smaller ``|λ − c|``), so an estimate from a
few products is enough: :data:`~curvsketch.sketch.plan.SHIFT_STEPS` steps of Lanczos
(:func:`curvsketch.sketch.krylov.block_krylov`, one start vector of the stream
``"seigh.shift"``) give Ritz intervals ``[θ − r, θ + r]``, and ``c`` is the outermost
interval end (``min(θ − r)`` for ``"LA"``, ``max(θ + r)`` for ``"SA"``). These products are
counted in ``num_products``. Ritz values and residuals map back exactly
(``θ = ±θ' + c``, residuals are shift-invariant). The eigenvalues of ``"LA"``/``"SA"`` are
the Ritz values ``θ`` (the ``±‖Hu‖`` correction is a first-order gain only for the dominant
``|λ|``). The shifted spectrum decays slowly (``|λ − c|`` of the wanted and the unwanted
eigenvalues are of one size), so the range finder needs power iterations and stays far less
accurate than ``"krylov"`` for the same products; prefer ``"krylov"`` for ``"LA"``/``"SA"``.
On the paper's 7k MLP Hessian (top 20, ``outer = 40``): ``"LA"`` is off by 6e-2 with 4 power
iterations and 5e-5 with 16; ``"SA"`` stays off by ~1 even with 16 (``|λ − c|`` of its
wanted eigenvalues and of the bulk differ by 2 %), where ``"krylov"`` reaches rounding
with 400 products.
"""

from __future__ import annotations

from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.factors import Factors, eigh_by_magnitude, orthonormal_basis, which_order
from curvsketch.sketch.krylov import block_krylov
from curvsketch.sketch.measure import apply_in_blocks, measure_outer
from curvsketch.sketch.noise import STREAM_PSI, STREAM_SHIFT
from curvsketch.sketch.plan import SketchPlan
from curvsketch.sketch.ranks import split_over_ranks
from curvsketch.sketch.residuals import column_residual_norms, norm_estimate, residual_floor
from curvsketch.sketch.timing import stage_timer

__all__ = [
    "estimate_shift",
    "recover_hmt",
    "run",
    "shift_back",
    "shifted_operator",
]


class _Shifted:
    """``sign·(H − cI)`` as an operator (``sign = −1`` for ``"SA"``)."""

    def __init__(self, op: Any, shift: float, sign: float) -> None:
        self.op, self.shift, self.sign = op, shift, sign
        self.shape, self.dtype, self.device = op.shape, op.dtype, op.device

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.op @ x
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            return out  # measure._product names the bad shape
        return (out - self.shift * x).mul_(self.sign)


def estimate_shift(
    op: Any, plan: SketchPlan, progress: Progress | None, timings: dict[str, float]
) -> float:
    """The shift ``c`` of ``which="LA"`` (below ``λ_min``) or ``"SA"`` (above ``λ_max``)
    from ``plan.shift_steps`` Lanczos steps; see the module docstring."""
    assert plan.dtype is not None and plan.device is not None
    start = plan.test_operator(STREAM_SHIFT, 1).columns(0, 1, dtype=plan.dtype, device=plan.device)
    ritz = block_krylov(
        op,
        start,
        plan.shift_steps,
        block_size=1,
        seed=plan.seed,
        on_block=None if progress is None else progress.update,
        timings=timings,
    )
    assert ritz.ritz is not None and ritz.residuals is not None
    if plan.which == "LA":
        return float((ritz.ritz - ritz.residuals).min())
    return float((ritz.ritz + ritz.residuals).max())


def shifted_operator(
    op: Any, plan: SketchPlan, progress: Progress | None, timings: dict[str, float]
) -> tuple[Any, float, float]:
    """``(operator to sketch, shift c, sign)``: ``op`` itself for ``which="LM"``, else
    ``sign·(op − cI)`` with ``c`` from :func:`estimate_shift` (module docstring)."""
    if plan.which == "LM":
        return op, 0.0, 1.0
    shift = estimate_shift(op, plan, progress, timings)
    sign = 1.0 if plan.which == "LA" else -1.0
    return _Shifted(op, shift, sign), shift, sign


def shift_back(
    factors: Factors, plan: SketchPlan, shift: float, sign: float, timings: dict[str, float]
) -> Factors:
    """The factors of ``H`` from those of the sketched (shifted) operator, by ``which``."""
    if plan.which == "LM":
        return factors
    assert factors.ritz is not None and factors.residuals is not None
    with stage_timer(timings, "eigvec"):
        ritz = sign * factors.ritz + shift
        order = which_order(ritz, plan.which)
    rot, res = factors.rot[:, order], factors.residuals[order]
    return Factors(ritz[order], factors.basis, rot, ritz[order], res)


def run(op: Any, plan: SketchPlan, progress: Progress | None, timings: dict[str, float]) -> Factors:
    """Range finder, ``plan.power_iters`` subspace iterations, Rayleigh–Ritz; for
    ``which="LA"``/``"SA"`` on the shifted operator (module docstring).

    Under an initialised ``torch.distributed`` group the columns of each block product are
    split over the ranks and gathered (:func:`curvsketch.sketch.ranks.split_over_ranks`;
    not for a ``collective`` operator).
    """
    assert plan.dtype is not None and plan.device is not None
    op, shift, sign = shifted_operator(split_over_ranks(op, plan), plan, progress, timings)
    on_block = None if progress is None else progress.update
    block = plan.block_size
    psi = plan.test_operator(STREAM_PSI, plan.outer)
    with stage_timer(timings, "measure"):
        y = measure_outer(
            op,
            psi,
            plan.outer,
            block_size=block,
            dtype=plan.dtype,
            device=plan.device,
            progress=progress,
        )
    with stage_timer(timings, "qr"):
        q = orthonormal_basis(y)
        del y
    for it in range(plan.power_iters):
        with stage_timer(timings, "measure"):
            what = f"op @ Q (power iteration {it + 1})"
            hq = apply_in_blocks(op, q, block, what=what, on_block=on_block)
        with stage_timer(timings, "qr"):
            q = orthonormal_basis(hq)
            del hq
    with stage_timer(timings, "measure"):
        hq = apply_in_blocks(op, q, block, what="op @ Q (Rayleigh-Ritz)", on_block=on_block)
    return shift_back(recover_hmt(q, hq, timings=timings), plan, shift, sign, timings)


def recover_hmt(
    q: torch.Tensor, hq: torch.Tensor, *, timings: dict[str, float] | None = None
) -> Factors:
    """Rayleigh–Ritz step of the two-pass method (Halko, Martinsson, Tropp 2011, Alg. 5.3),
    with residual norms and residual-corrected eigenvalues.

    ``B = QᵀHQ = W Θ Wᵀ`` gives Ritz pairs ``(θᵢ, xᵢ = Q wᵢ)``. Since ``H Q`` is at hand,
    the residuals ``rᵢ = ‖H xᵢ − θᵢ xᵢ‖ = ‖(HQ − QB) wᵢ‖`` cost one ``D·o²`` product and a
    small Gram matrix, with no cancellation (``R = HQ − QB`` is formed first). Two classical
    facts for a symmetric ``H`` and unit ``x`` (Parlett, "The Symmetric Eigenvalue Problem",
    SIAM 1998, ch. 4 on residual bounds and ch. 11 on Rayleigh–Ritz approximations):

    * some eigenvalue of ``H`` lies in ``[θᵢ − rᵢ, θᵢ + rᵢ]`` (an error bar per pair);
    * ``xᵢ ⟂ H xᵢ − θᵢ xᵢ``, so ``‖H xᵢ‖ = √(θᵢ² + rᵢ²)``: the square root of the Rayleigh
      quotient of ``H²``. For a Ritz vector ``x = cos φ·u + sin φ·v`` of an eigenvector
      ``u`` (eigenvalue ``λ``), ``θ`` is off by ``sin²φ·(λ − vᵀHv)`` and ``‖Hx‖`` by about
      ``½ sin²φ·(λ − ‖Hv‖²/λ)``: for the dominant eigenvalues, half the error. This is a
      first-order effect: it needs Ritz vectors that are already accurate (errors of a few
      percent); where the sketch is too small for a flat spectrum, neither value is.

    The residual norms are formed as ``‖R wᵢ‖`` in row blocks, not from the Gram matrix
    ``RᵀR`` (which can cancel to ``√eps·‖R‖`` when ``wᵢ`` combines large columns of ``R``
    into a small ``R wᵢ``), and the returned ``residuals`` are ``rᵢ + (√D + o)·eps·‖H‖``, floored
    at the rounding level of the products so that ``[θᵢ − rᵢ, θᵢ + rᵢ]`` holds an eigenvalue
    (:mod:`curvsketch.sketch.residuals`).

    The returned ``values`` are ``sign(θᵢ)·√(θᵢ² + rᵢ²)`` (unfloored ``rᵢ``), re-sorted by
    magnitude; ``ritz`` and ``residuals`` keep ``θ`` and ``r`` (the Rayleigh–Ritz values give
    the best approximation ``Q M Qᵀ`` of ``H`` in Frobenius norm, so low-rank operators use them).
    On the paper's MNIST setting the correction halves the top-10 and top-50 eigenvalue
    errors (``benchmarks/results/seigh_mnist_hmt20.md``).

    Args:
        q: orthonormal basis ``(D, o)``.
        hq: ``H Q``, shape ``(D, o)``; overwritten with the residual ``HQ − QB``.
        timings: optional dict; adds ``core``, ``eigh`` and ``eigvec`` seconds.

    Returns:
        :class:`Factors` ``(values sorted by |value|, Q, W, θ, r + floor)``.
    """
    with stage_timer(timings, "core"):
        b = q.T @ hq
        b = (b + b.T) / 2
    ritz, w = eigh_by_magnitude(b, timings)
    with stage_timer(timings, "core"):
        residual = hq.addmm_(q, b, alpha=-1)
        norms = column_residual_norms(residual, w)
        del residual
        sign = torch.where(ritz < 0, -1.0, 1.0).to(ritz.dtype)
        values = sign * torch.hypot(ritz, norms)
        order = torch.argsort(values.abs(), descending=True, stable=True)
        floor = residual_floor(norm_estimate(values), q.shape[0], q.shape[1], q.dtype)
        bounds = norms + floor
    return Factors(values[order], q, w[:, order], ritz[order], bounds[order])
