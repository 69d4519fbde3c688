"""SSVD: sketched singular value decomposition of a rectangular operator.

Fernandez, Schneider, Mahsereci, Hennig (TMLR 2025), §3, Alg. 1, i.e. the sketch of Tropp,
Yurtsever, Udell, Cevher, "Streaming low-rank matrix approximation with an application to
scientific simulation", SIAM J. Sci. Comput. 41(4), 2019: with independent test operators
``Υ, Ω`` (``o × M``, ``o × N``) and ``Φ, Ψ`` (``s × M``, ``s × N``) measure the co-range
sketch ``X = ΥA`` (``o`` adjoint products), the range sketch ``Y = AΩᵀ`` (``o`` products)
and the core sketch ``Z = ΦAΨᵀ`` (``s`` products); then ``Q = orth(Y)``, ``P = orth(Xᵀ)``,
``C = (ΦQ)⁺ Z ((ΨP)⁺)ᵀ``, ``C = W Σ Tᵀ`` and ``A ≈ (QW) Σ (PT)ᵀ``: ``2o + s`` products.
"""

from __future__ import annotations

from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.factors import core_solve, orthonormal_basis
from curvsketch.sketch.measure import block_ranges, has_adjoint, measure_block
from curvsketch.sketch.noise import NoiseOperator, make_noise
from curvsketch.sketch.plan import SvdPlan, make_svd_plan
from curvsketch.sketch.result import SvdResult
from curvsketch.sketch.timing import stage_timer
from curvsketch.sketch.validate import check_operator

__all__ = ["STREAMS", "recover_svd", "ssvd"]

#: Stream names of the four test operators under the user seed.
STREAMS = {"upsilon": "ssvd.upsilon", "omega": "ssvd.omega", "phi": "ssvd.phi", "psi": "ssvd.psi"}


def _measure(
    op: Any,
    test: NoiseOperator,
    rows: int,
    plan: SvdPlan,
    bar: Progress,
    *,
    inner: NoiseOperator | None = None,
    adjoint: bool = False,
) -> torch.Tensor:
    """Measure ``op @ Ω[:rows]ᵀ`` (or ``opᵀ``, or ``Φ`` of it) in blocks of the plan's size."""
    dtype, device = plan.dtype, plan.device
    out_rows = inner.num_rows if inner is not None else op.shape[1 if adjoint else 0]
    out = torch.empty((out_rows, rows), dtype=dtype, device=device)
    for i0, i1 in block_ranges(0, rows, plan.block_size):
        y, z = measure_block(
            op, test, i0, i1, inner=inner, adjoint=adjoint, dtype=dtype, device=device
        )
        out[:, i0:i1] = z if z is not None else y
        bar.update(i1 - i0)
    return out


def ssvd(
    op: Any,
    outer: int,
    inner: int | None = None,
    *,
    noise: str = "ssrft",
    seed: int = 0,
    block_size: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> SvdResult:
    """Sketched SVD of an ``M × N`` operator (Fernandez et al. 2025, Alg. 1; module doc).

    Args:
        op: operator with ``.shape == (M, N)``, ``.dtype``, ``.device``, ``op @ X`` and an
            adjoint (``op.rmatmul(X)`` or ``op.T @ X``); tensors/arrays are wrapped.
        outer: ``o``, the number of singular triplets.
        inner: ``s`` (default ``min(2·outer, M, N)``), ``outer <= s <= min(M, N)``.
        noise: ``"ssrft"``, ``"gaussian"`` or ``"rademacher"``.
        seed: seed of the four test operators.
        block_size: test vectors per operator product (default ``min(64, 2o + s)``).
        dtype: must be ``None`` or ``op.dtype``.
        device: must be ``None`` or ``op.device``.
        progress: report products on stderr.

    Returns:
        :class:`SvdResult` (``σ`` descending, ``U`` and ``V`` factored); ``2o + s`` products.

    Raises:
        ValueError: bad sizes or names, dtype/device mismatch, non-finite measurements.
        TypeError: the operator has no adjoint product.
    """
    op = check_operator(op, "ssvd")
    plan = make_svd_plan(
        op,
        outer,
        inner,
        noise=noise,
        seed=seed,
        block_size=block_size,
        dtype=dtype,
        device=device,
    )
    if not has_adjoint(op):
        raise TypeError(
            f"ssvd: {type(op).__name__} has no adjoint product; it needs op.rmatmul(x) or "
            "op.T @ x (e.g. a curvsketch.operators.LinearOperator implementing _rmatmat)"
        )
    (m, n), o, s = plan.shape, plan.outer, plan.inner
    upsilon = make_noise(plan.noise, o, m, plan.seed, STREAMS["upsilon"])
    omega = make_noise(plan.noise, o, n, plan.seed, STREAMS["omega"])
    phi = make_noise(plan.noise, s, m, plan.seed, STREAMS["phi"])
    psi = make_noise(plan.noise, s, n, plan.seed, STREAMS["psi"])
    timings: dict[str, float] = {}
    with (
        Progress(plan.num_products, "ssvd products", enabled=progress, unit="products") as bar,
        stage_timer(timings, "measure"),
    ):
        xt = _measure(op, upsilon, o, plan, bar, adjoint=True)
        y = _measure(op, omega, o, plan, bar)
        z = _measure(op, psi, s, plan, bar, inner=phi)
    sigma, q, w, p, t = recover_svd(xt, y, z, phi, psi, block_size=plan.block_size, timings=timings)
    return SvdResult(
        singular_values=sigma,
        left_basis=q,
        left_rot=w,
        right_basis=p,
        right_rot=t,
        noise=plan.noise,
        seed=plan.seed,
        outer=o,
        inner=s,
        num_products=plan.num_products,
        timings=timings,
    )


def recover_svd(
    xt: torch.Tensor,
    y: torch.Tensor,
    z: torch.Tensor,
    phi: NoiseOperator,
    psi: NoiseOperator,
    *,
    block_size: int | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sketched SVD recovery: SSVD (Fernandez et al., TMLR 2025, §3, Alg. 1), after Tropp,
    Yurtsever, Udell, Cevher (SIAM J. Sci. Comput. 2019).

    ``Q = orth(Y)``, ``P = orth(Xᵀ)``, ``C = (ΦQ)⁺ Z ((ΨP)⁺)ᵀ = W Σ Tᵀ``;
    ``A ≈ (QW) Σ (PT)ᵀ``.

    Args:
        xt: co-range sketch, transposed: ``Xᵀ = Aᵀ Υᵀ``, shape ``(N, o)``.
        y: range sketch ``Y = A Ωᵀ``, shape ``(M, o)``.
        z: core sketch ``Z = Φ A Ψᵀ``, shape ``(s, s)``.
        phi: ``Φ`` (``s × M``).
        psi: ``Ψ`` (``s × N``).
        block_size: columns per batched test-operator transform.
        timings: optional dict; adds ``qr``, ``core``, ``eigh`` (the small SVD), ``eigvec``.

    Returns:
        ``(σ, Q, W, P, T)`` with ``σ`` descending.
    """
    with stage_timer(timings, "qr"):
        q = orthonormal_basis(y)
        p = orthonormal_basis(xt)
    with stage_timer(timings, "core"):
        phi_q = phi.matmul(q, block_size=block_size)
        psi_p = psi.matmul(p, 0, z.shape[1], block_size=block_size)
        core = core_solve(phi_q, z, psi_p)
    with stage_timer(timings, "eigh"):
        w, sigma, th = torch.linalg.svd(core)
    with stage_timer(timings, "eigvec"):
        t = th.T
    return sigma, q, w, p, t
