"""Krylov-aware trace estimation: an exact trace on a block Krylov space, Hutchinson on the rest.

Chen & Hallman, "Krylov-aware stochastic trace estimation", SIAM J. Matrix Anal. Appl.
44(3), 2023, §3 (Algorithm 3.1), for ``f(x) = x``: ``q`` block products of width ``b``
build an orthonormal basis ``Q`` of the block Krylov space
``K_q(A, Ω) = span(Ω, AΩ, …, A^{q−1}Ω)`` and, on the way, every ``A Q_j``; so
``tr(QᵀAQ) = Σⱼ tr(Q_jᵀ (A Q_j))`` is exact at no extra cost (Hutch++ pays a second pass of
``k`` products for ``tr(QᵀAQ)`` on a ``k``-dimensional ``range(AS)``). The remaining
``r = N − qb`` products are Girard–Hutchinson probes ``xᵢ = (I − QQᵀ)zᵢ`` (Rademacher
``zᵢ``) on the residual ``(I − QQᵀ)A(I − QQᵀ)``:

``tr A = tr(QᵀAQ) + tr((I − QQᵀ)A(I − QQᵀ))``

holds for any orthonormal ``Q``, and ``Q`` does not depend on the ``zᵢ``, so the estimate is
unbiased and its standard error (sample standard deviation of the ``r`` probe values over
``√r``) is the ordinary Hutchinson one, conditional on ``Q``: honest for any operator, unlike
XTrace's leave-one-out spread. A Krylov space of ``q`` steps captures the outlying
eigenvalues of a Hessian far better than a sketch ``range(AΩ)`` of the same dimension (Hutch++,
XTrace), so the residual keeps less of the Frobenius norm, which sets Hutchinson's variance
(``2‖B‖_F²/r`` for Gaussian probes); and it costs one product per basis vector, not two.
Exact, to rounding, when ``rank A ≤ (q − 1)b`` (the residual is then zero: the Krylov space
holds the range). The split of ``N`` into ``b``, ``q`` and ``r`` is :func:`krylov_split`.

Blocks that lose rank (an operator of low rank, or a space exhausted) are completed with
random vectors orthogonal to the basis (:func:`~curvsketch.sketch.gram_schmidt.next_block`);
the basis stays orthonormal (classical Gram–Schmidt, DGKS re-projection), which is all the
identity above needs.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from curvsketch.sketch.gram_schmidt import DEFLATION_ROUNDOFFS, next_block, project_full
from curvsketch.sketch.noise import RademacherNoise

__all__ = ["KRYLOV_TRACE_STREAMS", "krylov_split", "krylov_trace"]

#: Random streams (start block; residual probes) under the user seed.
KRYLOV_TRACE_STREAMS = {"start": "trace.krylov.start", "probes": "trace.krylov.probes"}


def krylov_split(num_products: int, rank: int) -> tuple[int, int]:
    """The ``(width b, steps q)`` of the Krylov space for ``num_products`` products.

    Rule, from measurements on the paper's 7k MLP (dense float32 copy of its Hessian,
    200–400 seeds at ``N`` = 30, 60, 120, prototype runs not kept as a benchmark): half the
    products on the Krylov space, half on residual probes; about ten steps of width
    ``b ≈ N/20`` (at least 2): deep, narrow spaces resolve the outlying eigenvalues better
    than wide, shallow ones of the same size (measured: ``b = 6, q = 10`` beat ``b = 12, q = 5`` and
    ``b = 10, q = 10``'s smaller residual share at ``N = 120``).

    Args:
        num_products: products to spend (``≥ 3``).
        rank: dimension of the space the target lives on (``≥ ⌊N/2⌋``, checked by the
            caller).

    Returns:
        ``(b, q)`` with ``b·q ≤ ⌊N/2⌋``, so at least ``⌈N/2⌉ ≥ 2`` residual probes.
    """
    half = min(num_products // 2, rank)
    width = max(min(2, half), round(half / 10))
    return width, max(1, half // width)


def _extend(
    target: Any, basis: torch.Tensor, c1: int, w: torch.Tensor, scale: float, generator: Any
) -> float:
    """Project ``w = A Q_j`` against ``basis[:, :c1]`` and write the next block after it;
    returns the largest coefficient so far (the deflation tolerance's scale)."""
    done = basis[:, :c1]
    coef = project_full(w, lambda x: done.T @ x, lambda x, c: x.addmm_(done, c, alpha=-1))
    scale = max(scale, float(coef.abs().max()))
    tol = DEFLATION_ROUNDOFFS * torch.finfo(w.dtype).eps * max(scale, torch.finfo(w.dtype).tiny)

    def against(x: torch.Tensor) -> None:
        # random fills and re-projections stay ⟂ Q and ⟂ U of a deflation
        x.sub_(done @ (done.T @ x))
        x.copy_(target.project(x))

    width = int(w.shape[1])
    basis[:, c1 : c1 + width], _ = next_block(w, against, tol, generator)
    return scale


def krylov_trace(
    target: Any, num_products: int, seed: int, width: int, steps: int
) -> tuple[float, float, int]:
    """Krylov-aware estimate of ``tr`` of ``target`` (a ``trace._Target``).

    Args:
        target: the operator (``.apply``, ``.project``, ``.dim``, ``.rank``, ``.op``).
        num_products: products to spend; ``num_products − width·steps`` residual probes.
        seed: seed of the start block and the probes.
        width: block width ``b``.
        steps: Krylov steps ``q``.

    Returns:
        ``(estimate, standard error, products spent)``.
    """
    op = target.op
    dtype, device = op.dtype, op.device
    total = width * steps
    probes = num_products - total
    generator = torch.Generator().manual_seed(int(seed))
    basis = torch.empty((target.dim, total), dtype=dtype, device=device)
    start = RademacherNoise(width, target.dim, seed, KRYLOV_TRACE_STREAMS["start"])
    omega = target.project(start.columns(0, width, dtype=dtype, device=device).contiguous())
    basis[:, :width] = torch.linalg.qr(omega, mode="reduced").Q
    known = 0.0
    scale = 0.0
    for j in range(steps):
        c0, c1 = j * width, (j + 1) * width
        w = target.measure(
            lambda a, b, c0=c0: basis[:, c0 + a : c0 + b],
            width,
            f"op @ Q (Krylov block {j + 1} of {steps})",
        )
        known += float((basis[:, c0:c1] * w).sum(dtype=torch.float64))
        if j + 1 == steps:
            break
        scale = _extend(target, basis, c1, w, scale, generator)
        del w
    if probes <= 0:
        return known, 0.0, total
    noise = RademacherNoise(probes, target.dim, seed, KRYLOV_TRACE_STREAMS["probes"])
    samples = torch.empty(probes, dtype=torch.float64, device=device)
    for s0 in range(0, probes, target.block):
        s1 = min(probes, s0 + target.block)
        x = target.project(noise.columns(s0, s1, dtype=dtype, device=device))
        x = x - basis @ (basis.T @ x)
        ax = target.apply(x, "op @ (I-QQ^T)z (krylov residual probes)", total + s0)
        samples[s0:s1] = (x * ax).sum(0, dtype=torch.float64)
    mean = float(samples.mean())
    err = float(samples.std() / math.sqrt(probes)) if probes > 1 else math.inf
    return known + mean, err, num_products
