"""Block Gram–Schmidt of the Krylov recurrence: projections, DGKS re-projection, deflation.

Each Krylov block ``W = H Q_j`` is projected against the basis built so far and
orthonormalised into the next basis block (:mod:`curvsketch.sketch.krylov`, in memory, and
:mod:`curvsketch.sketch.krylov_outofcore`, against a basis on disk). Classical Gram–Schmidt
in matrix products, repeated where a pass cancels most of a column (Daniel, Gragg,
Kaufman & Stewart, "Reorthogonalization and stable algorithms for updating the
Gram–Schmidt QR factorization", Math. Comp. 30, 1976; Giraud, Langou & Rozložník, Comput.
Math. Appl. 50, 2005: "twice is enough"), and deflation with random fill when a block
loses rank (block Lanczos with deflation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["DEFLATION_ROUNDOFFS", "next_block", "project_full", "project_local_then_full"]

#: Columns of a projected block whose norm falls below this many unit roundoffs times the
#: operator's largest coefficient so far are treated as lost (rank deficiency).
DEFLATION_ROUNDOFFS = 100.0


def project_local_then_full(basis: torch.Tensor, w: torch.Tensor, local: int) -> torch.Tensor:
    """Project ``w`` against ``basis`` in place; return the summed coefficients ``Qᵀw``.

    First against the last ``local`` columns (the blocks ``W = H Q_j`` really has
    components along: ``Q_j`` and ``Q_{j−1}``), then against the whole basis
    (:func:`project_full`), which removes the rounding-level components along the older
    blocks and acts as the second Gram–Schmidt pass for the local ones ("twice is
    enough"). Half the flops of projecting twice against everything, with the same
    orthogonality on Hessian problems.
    """
    near = basis[:, basis.shape[1] - local :]
    coef_near = near.T @ w
    w.addmm_(near, coef_near, alpha=-1)
    coef = project_full(w, lambda x: basis.T @ x, lambda x, c: x.addmm_(basis, c, alpha=-1))
    coef[basis.shape[1] - local :] += coef_near
    return coef


#: A column whose norm falls below this fraction in a Gram–Schmidt pass is projected again
#: (Daniel, Gragg, Kaufman & Stewart, Math. Comp. 30, 1976: the classical ``1/√2``).
_DGKS = 0.5**0.5

#: Further passes at most after the first (each ``2·D·c·b`` flops).
_EXTRA_PASSES = 2


def project_full(
    w: torch.Tensor,
    coefficients: Callable[[torch.Tensor], torch.Tensor],
    subtract: Callable[[torch.Tensor, torch.Tensor], Any],
) -> torch.Tensor:
    """Classical Gram–Schmidt of ``w`` against the whole basis, repeated while it cancels.

    One pass leaves components of about ``eps·‖w_before‖`` along the basis; when the pass
    cancels most of a column (``‖w_after‖ < ‖w_before‖/√2``, the DGKS criterion) those are
    large relative to what is left, and normalising it would lose orthogonality (measured
    in float32 on a spectrum that falls to a flat level at ``1e-7·‖H‖``: ``|QᵀQ − I|`` grew
    to 0.9 within two blocks of the fall). Such blocks get up to two further passes;
    blocks whose columns keep their norm (the usual case before the basis exhausts the
    numerical rank) cost one pass, as before.

    Args:
        w: ``(D, b)`` block, projected in place.
        coefficients: ``x ↦ Qᵀx`` for the basis ``Q``.
        subtract: ``(x, c) ↦ x −= Q c`` in place.

    Returns:
        The summed coefficients of all passes.
    """
    before = torch.linalg.vector_norm(w, dim=0)
    coef = coefficients(w)
    subtract(w, coef)
    for _ in range(_EXTRA_PASSES):
        after = torch.linalg.vector_norm(w, dim=0)
        if not bool((after < _DGKS * before).any()):
            break
        more = coefficients(w)
        subtract(w, more)
        coef += more
        before = after
    return coef


def _against(basis: torch.Tensor | Callable[[torch.Tensor], None], x: torch.Tensor) -> None:
    """``x −= Q Qᵀ x`` in place, for a ``(D, c)`` basis or a projecting function."""
    if callable(basis):
        basis(x)
    else:
        x -= basis @ (basis.T @ x)


def next_block(
    w: torch.Tensor,
    basis: torch.Tensor | Callable[[torch.Tensor], None],
    tol: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal ``Q_{j+1}`` (``D × b``, ⟂ ``basis``) and ``R_j`` with ``W ≈ Q_{j+1} R_j``.

    ``w`` is already projected against ``basis``. Fast path: Householder QR. Its ``Q`` is
    orthonormal, but ``Q = W R⁻¹`` amplifies the rounding-level components of ``W`` along
    the basis by ``‖w_i‖ / |R_ii|``: when the columns of ``W`` nearly cancel one another
    (``|R_ii| < ‖w_i‖/√2``; it happens as the basis exhausts the numerical rank), ``Q`` is
    projected against the basis once more and re-orthonormalised (``R`` updated; the
    dropped coefficients are at rounding level). If a diagonal entry of ``R`` is below
    ``tol``, ``W`` is (numerically) rank deficient: its range is kept from an SVD
    (projected again, as above), the rest of the block is completed with random vectors
    projected against the basis, and ``R = Q_{j+1}ᵀ W``. ``basis`` is the ``(D, c)`` basis
    or a function that projects a block against it in place (``x −= Q Qᵀ x``; the
    out-of-core basis of :mod:`.krylov_outofcore`).
    """
    q, r = torch.linalg.qr(w, mode="reduced")
    diagonal = r.diagonal().abs()
    if bool((diagonal > tol).all()):
        if bool((diagonal < _DGKS * torch.linalg.vector_norm(w, dim=0)).any()):
            _against(basis, q)
            q, r2 = torch.linalg.qr(q, mode="reduced")
            r = r2 @ r
        return q, r
    u, s, _ = torch.linalg.svd(w, full_matrices=False)
    keep = u[:, s > tol]
    if keep.shape[1]:
        _against(basis, keep)
        keep = torch.linalg.qr(keep, mode="reduced").Q
    missing = w.shape[1] - keep.shape[1]
    fill = torch.randn(
        (w.shape[0], missing), generator=generator, dtype=torch.float64, device="cpu"
    ).to(dtype=w.dtype, device=w.device)
    for _ in range(2):
        _against(basis, fill)
        fill -= keep @ (keep.T @ fill)
        fill = torch.linalg.qr(fill, mode="reduced").Q
    q = torch.cat([keep, fill], dim=1)
    return q, q.T @ w
