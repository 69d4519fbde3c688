"""Many independent Lanczos recurrences advanced together: one operator call per step.

Stochastic Lanczos quadrature (Ubaru, Chen & Saad, "Fast estimation of tr(f(A)) via
stochastic Lanczos quadrature", SIAM J. Matrix Anal. Appl. 38(4), 2017, §3) runs one
Lanczos recurrence per random probe. Run one after the other (as PyHessian does), ``P``
probes of ``m`` steps cost ``P·m`` operator calls, each a full pass over the data for one
vector. Here the ``P`` recurrences are independent but *synchronous*: at step ``j`` the
``P`` current vectors form one ``(D, P)`` block and the operator is called once on it (one
pass over the data serves every probe, and a Hessian-vector product on a block is much
cheaper per vector than on one). Everything else stays per probe: each probe has its own
``α_j``, ``β_j`` and its own orthonormal basis, stored together as a ``(P, m, D)`` tensor,
and each new vector is reorthogonalised against its own probe's basis by batched matrix
products (``torch.bmm``): classical Gram–Schmidt, repeated once when a pass cancelled
much of the vector (CGS2 with the test of Daniel, Gragg, Kaufman & Stewart 1976; Giraud,
Langou, Rozložník, "The loss of orthogonality in the Gram-Schmidt orthogonalization
process", Comput. Math. Appl. 50, 2005: two passes give orthogonality to working
precision). Full reorthogonalisation keeps the Ritz values free of the
spurious copies that plain Lanczos produces in floating point (Paige 1971; Parlett, "The
Symmetric Eigenvalue Problem", SIAM 1998, ch. 13), at ``O(P·m²·D)`` flops and ``P·m·D``
numbers of memory.

A probe whose new vector vanishes (``β_j ≈ 0``: its Krylov space is invariant, e.g. after
``rank + 1`` steps on a low-rank operator) stops there: its tridiagonal matrix is then
exact (its quadrature integrates every function exactly for that probe) and its later
rows are left at zero. The other probes go on; stopped probes are no longer multiplied.

Optionally every vector is kept orthogonal to a given orthonormal ``U`` (``(D, k)``): the
recurrences then run on ``P A P`` restricted to ``range(P)``, ``P = I − UUᵀ`` (deflation),
so the ``k`` zero eigenvalues that the projection creates on ``range(U)`` are never seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from curvsketch.sketch.measure import check_finite

__all__ = ["BREAKDOWN_ROUNDOFFS", "LanczosRun", "batched_lanczos", "ritz_quadrature"]

#: A probe stops (breakdown) when ``β_j`` falls below this many unit roundoffs times the
#: largest ``‖A v_i‖`` its recurrence has seen. Measured on exactly low-rank float64 and
#: float32 operators (D = 200-3000), the residual at a true breakdown is 1-1000 roundoffs.
#: Either mistake is harmless: a missed breakdown continues in a fresh direction orthogonal
#: to the probe's basis, whose nodes carry weight ``O(β²)``; a premature stop after ``s``
#: steps still leaves the probe's ``s``-point Gauss rule (exact to degree ``2s − 1``).
BREAKDOWN_ROUNDOFFS = 2000.0


@dataclass(frozen=True)
class LanczosRun:
    """The tridiagonal matrices of ``P`` Lanczos recurrences.

    Attributes:
        alpha: ``(P, m)`` float64 diagonals; probe ``p`` uses ``alpha[p, :steps[p]]``.
        beta: ``(P, m − 1)`` float64 off-diagonals; probe ``p`` uses ``beta[p, :steps[p] − 1]``.
        steps: ``(P,)`` int64 Lanczos steps each probe took (``m`` unless it broke down).
        num_calls: operator calls (one per step while any probe is active).
        num_products: operator products (vectors multiplied), ``steps.sum()``.
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    steps: torch.Tensor
    num_calls: int
    num_products: int


def _project_out(w: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
    """``w (P, D) ← w − (w U) Uᵀ``: remove the components along ``range(U)``."""
    if u is None:
        return w
    return w - (w @ u) @ u.T


#: A second Gram–Schmidt pass runs when a pass leaves less than this fraction of the norm
#: (Daniel, Gragg, Kaufman & Stewart, Math. Comp. 30(136), 1976: "twice is enough").
REORTH_KEEP = 1 / math.sqrt(2)


def _reorthogonalise(
    w: torch.Tensor, own: torch.Tensor, u: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full reorthogonalisation of each probe's ``w`` (``(P, D)``) against its own Lanczos
    vectors ``own`` (``(P, j, D)``): classical Gram–Schmidt as two batched matrix products,
    repeated once (CGS2) only when some probe's norm dropped below :data:`REORTH_KEEP` of
    what it was (the DGKS test), which after the three-term recurrence is rare.

    Returns:
        ``(w, ‖w‖)`` with ``‖w‖`` per probe.
    """
    before = torch.linalg.vector_norm(w, dim=1)
    for _ in range(2):
        coef = torch.bmm(own, w.unsqueeze(2))  # (P, j, 1)
        w = w - torch.bmm(coef.transpose(1, 2), own).squeeze(1)  # (P, 1, j) @ (P, j, D)
        w = _project_out(w, u)
        after = torch.linalg.vector_norm(w, dim=1)
        if bool((after >= REORTH_KEEP * before).all()):
            break
        before = after
    return w, after


def _apply(op: Any, v: torch.Tensor, active: torch.Tensor, step: int, total: int) -> torch.Tensor:
    """``A v_p`` for the active probes (rows of ``v``), one operator call; zero elsewhere."""
    num_probes = v.shape[0]
    idx = active.nonzero().squeeze(1)
    block = v[idx].T  # (D, P_active), column-major: each probe's vector is contiguous
    out = op @ block
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(block.shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{type(op).__name__} returned {got} for a {tuple(block.shape)} block at Lanczos "
            f"step {step} of {total}; the operator must map (D, m) blocks to (D, m)"
        )
    check_finite(out, f"op @ v (Lanczos step {step} of {total})", 0, num_probes)
    w = torch.zeros_like(v)
    w[idx] = out.T.to(v.dtype)
    return w


def batched_lanczos(
    op: Any,
    start: torch.Tensor,
    steps: int,
    *,
    orthogonal_to: torch.Tensor | None = None,
) -> LanczosRun:
    """Run ``P`` Lanczos recurrences on ``op`` together, one operator call per step.

    Args:
        op: symmetric ``D × D`` operator (``@`` on a ``(D, P)`` block).
        start: ``(D, P)`` starting vectors (any norm, non-zero; normalised here).
        steps: ``m``, the Lanczos steps (operator calls) per probe, ``1 <= m <= D``; with
            ``orthogonal_to`` of ``k`` columns at most ``D − k`` are possible and the
            recurrences stop there.
        orthogonal_to: optional ``(D, k)`` orthonormal ``U``; the recurrences then run on
            ``(I − UUᵀ) A (I − UUᵀ)`` restricted to the complement of ``range(U)``
            (``start`` is projected too).

    Returns:
        :class:`LanczosRun`.

    Raises:
        NonFiniteMeasurementError: a product has NaN/Inf (the message names the step).
        ValueError: a starting vector is zero (after the projection), or the operator
            returns a block of the wrong shape.
    """
    dim, num_probes = int(start.shape[0]), int(start.shape[1])
    dtype, device = start.dtype, start.device
    u = orthogonal_to
    room = dim - (0 if u is None else int(u.shape[1]))
    m = min(steps, room)
    eps = torch.finfo(dtype).eps
    tiny = torch.finfo(torch.float64).tiny

    v = start.T.contiguous()  # (P, D): one row per probe
    v = _project_out(_project_out(v, u), u)
    norms = torch.linalg.vector_norm(v, dim=1)
    if bool((norms == 0).any()):
        bad = int((norms == 0).nonzero()[0, 0])
        raise ValueError(
            f"probe {bad} is zero after removing the deflated eigenvectors: it lies in their "
            "span; use another seed or deflate fewer eigenpairs"
        )
    v = v / norms[:, None]

    basis = torch.zeros((num_probes, m, dim), dtype=dtype, device=device)
    basis[:, 0] = v
    alpha = torch.zeros((num_probes, m), dtype=torch.float64, device=device)
    beta = torch.zeros((num_probes, max(m - 1, 0)), dtype=torch.float64, device=device)
    taken = torch.zeros(num_probes, dtype=torch.int64, device=device)
    active = torch.ones(num_probes, dtype=torch.bool, device=device)
    scale = torch.zeros(num_probes, dtype=torch.float64, device=device)
    v_prev = torch.zeros_like(v)
    beta_prev = torch.zeros(num_probes, dtype=dtype, device=device)
    calls = 0
    for j in range(m):
        w = _project_out(_apply(op, v, active, j + 1, m), u)
        calls += 1
        a = (v * w).sum(dim=1)
        alpha[:, j] = torch.where(active, a.to(torch.float64), 0.0)
        taken += active.to(torch.int64)
        scale = torch.maximum(scale, torch.linalg.vector_norm(w, dim=1).to(torch.float64))
        if j == m - 1:
            break
        w = w - a[:, None] * v - beta_prev[:, None] * v_prev
        w, b = _reorthogonalise(w, basis[:, : j + 1], u)
        b64 = b.to(torch.float64)
        broke = active & (b64 <= BREAKDOWN_ROUNDOFFS * eps * torch.clamp(scale, min=tiny))
        active = active & ~broke
        beta[:, j] = torch.where(active, b64, 0.0)
        if not bool(active.any()):
            break
        safe = torch.where(active, b, torch.ones_like(b))
        v_prev, v = v, torch.where(active[:, None], w / safe[:, None], 0.0)
        beta_prev = torch.where(active, b, torch.zeros_like(b))
        basis[:, j + 1] = v
    return LanczosRun(
        alpha=alpha, beta=beta, steps=taken, num_calls=calls, num_products=int(taken.sum())
    )


def ritz_quadrature(run: LanczosRun, mass: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss quadrature of each probe: nodes ``θ_pj`` and weights ``mass·(e₁ᵀy_pj)²``.

    The eigenvalues ``θ`` and eigenvectors ``y`` of probe ``p``'s ``steps[p] × steps[p]``
    tridiagonal (Golub & Meurant, "Matrices, Moments and Quadrature", 1994), batched over
    the probes that took equally many steps.

    Args:
        run: the recurrences.
        mass: each probe's total weight.

    Returns:
        ``(nodes, weights)``, float64 ``(P, m)``; a probe that took ``s < m`` steps has
        weight 0 in its last ``m − s`` entries, where its heaviest node is repeated.
    """
    alpha, beta, steps = run.alpha, run.beta, run.steps
    m = alpha.shape[1]
    nodes = torch.zeros_like(alpha)
    weights = torch.zeros_like(alpha)
    for s in sorted({int(x) for x in steps.tolist()}):
        rows = (steps == s).nonzero().squeeze(1)
        t = torch.diag_embed(alpha[rows, :s])
        if s > 1:
            off = beta[rows, : s - 1]
            t = t + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        theta, vecs = torch.linalg.eigh(t)
        tau = vecs[:, 0, :].square() * mass
        nodes[rows, :s] = theta
        weights[rows, :s] = tau
        if s < m:
            heavy = theta.gather(1, tau.argmax(dim=1, keepdim=True))
            nodes[rows, s:] = heavy.expand(-1, m - s)
    return nodes, weights
