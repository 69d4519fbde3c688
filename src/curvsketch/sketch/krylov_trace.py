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
unbiased given the depth ``q`` and its standard error (sample standard deviation of the
``r`` probe values over ``√r``) is the ordinary Hutchinson one: honest for any operator,
unlike XTrace's leave-one-out spread. A Krylov space of ``q`` steps captures the outlying
eigenvalues of a Hessian far better than a sketch ``range(AΩ)`` of the same dimension
(Hutch++, XTrace), and it costs one product per basis vector, not two. Exact, to rounding,
when ``rank A ≤ (q − 1)b`` (the residual is then zero: the Krylov space holds the range).

**Adaptive depth.** Hutchinson's variance on the residual is about ``2‖R_k‖_F²/r``
(``R_k`` the residual of a ``k``-dimensional space, ``r = N − k`` probes), so the best
``k`` depends on how fast ``‖R_k‖_F`` falls, which differs between networks: measured, the
paper's 7k MLP wants ``k ≈ N/2`` (its Frobenius tail still falls), the 100k MLP of
``benchmarks/results/estimators.md`` is flat from ``k ≈ 0.3N`` on. So the split is chosen
from measurements, in the spirit of the adaptive Hutch++ of Persson, Cortinovis & Kressner
("Improved variants of the Hutch++ algorithm for trace estimation", SIAM J. Matrix Anal.
Appl. 43(3), 2022, doi:10.1137/21M1447623), though the rule is ours (a fixed budget, no
error tolerance). The first ``p`` probes (``p ≈ 0.4N``, *pilots*: :func:`krylov_plan`) are
measured before the space is built; after each step their residual norms
``ρ_k = mean ‖R_k zᵢ‖²`` (an unbiased estimate of ``‖R_k‖_F²``) cost no products, only
``O(Dkp)`` flops, because ``R_k z = (I − QQᵀ)(Az − (AQ)(Qᵀz))`` is built from the products
already made. The space grows while the predicted variance falls, i.e. while the last
step's ratio, extrapolated one step, beats the probes it costs:
``ρ_k/ρ_{k−b} < (N − k − b)/(N − k)`` (from the second step on: the first block is random
and captures nothing), up to ``N − p`` products; the pilots then join the other probes.
The depth depends on the pilots only through these second moments, not through their trace
samples; over 400 seeds per ``N`` on the 7k MLP the bias stayed below detection
(``|mean error|/SE ≤ 1.3``) and 2-SE coverage at 92–97 %. The memory is the basis, the
pilots and their products: at most ``(N + 2p)·D`` numbers.

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

__all__ = ["KRYLOV_PILOT_SHARE", "KRYLOV_TRACE_STREAMS", "krylov_plan", "krylov_trace"]

#: Random streams (start block; probes, pilots first) under the user seed.
KRYLOV_TRACE_STREAMS = {"start": "trace.krylov.start", "probes": "trace.krylov.probes"}
#: Share of the products measured as pilot probes before the Krylov space is built.
KRYLOV_PILOT_SHARE = 0.4


def krylov_plan(num_products: int, rank: int) -> tuple[int, int, int]:
    """The ``(width b, most steps q, pilots p)`` for ``num_products`` products.

    ``p = max(2, ⌈0.4N⌉)`` pilot probes; the space may take the other products, at most
    ``rank``; blocks of width ``b ≈ N/20`` (at least 2, where there is room): deep, narrow
    spaces resolve the outlying eigenvalues better than wide, shallow ones of the same size
    (measured on the 7k MLP's dense Hessian, 200–400 seeds at ``N`` = 30, 60, 120:
    ``b = 6, q = 10`` beat ``b = 12, q = 5`` at ``N = 120``). With 40 % pilots the depth
    rule of the module docstring came within 5 % (N = 60, 120) and 15 % (N = 30) of the
    best fixed depth picked in hindsight, over 400 seeds (prototype runs on a float32 copy
    of that Hessian, not kept as a benchmark; ``benchmarks/results/estimators.md`` has the
    real runs).

    Args:
        num_products: products to spend (``≥ 3``).
        rank: dimension of the space the target lives on (``≥ 1``).

    Returns:
        ``(b, q, p)`` with ``b·q ≤ min(N − p, rank)``.
    """
    pilots = max(2, math.ceil(KRYLOV_PILOT_SHARE * num_products))
    room = max(1, min(num_products - pilots, rank))
    width = min(max(2, round(num_products / 20)), room)
    return width, room // width, pilots


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


def _keep_growing(
    rho: list[float], steps: int, max_steps: int, left: int, width: int, eps: float
) -> bool:
    """The depth rule: grow while the extrapolated residual beats the probes it costs
    (``left`` probes if the space stops here); stop at a residual of rounding size."""
    if steps >= max_steps or rho[-1] <= (64 * eps) ** 2 * rho[0]:
        return False
    if steps < 2:
        return True
    return rho[-1] < rho[-2] * (left - width) / left


def krylov_trace(
    target: Any, num_products: int, seed: int, width: int, max_steps: int, pilots: int
) -> tuple[float, float, int, int]:
    """Krylov-aware estimate of ``tr`` of ``target`` (a ``trace._Target``), adaptive depth.

    Args:
        target: the operator (``.apply``, ``.measure``, ``.project``, ``.dim``, ``.op``).
        num_products: products to spend, all of them: pilots, Krylov blocks, probes.
        seed: seed of the start block and the probes.
        width: block width ``b``.
        max_steps: most Krylov steps (``b·max_steps ≤ num_products − pilots``).
        pilots: probes measured before the space is built (:func:`krylov_plan`).

    Returns:
        ``(estimate, standard error, products spent, dimension of the Krylov space)``.
    """
    op = target.op
    dtype, device = op.dtype, op.device
    eps = float(torch.finfo(dtype).eps)
    generator = torch.Generator().manual_seed(int(seed))
    noise = RademacherNoise(num_products, target.dim, seed, KRYLOV_TRACE_STREAMS["probes"])
    z = noise.columns(0, pilots, dtype=dtype, device=device)
    # y = A z − (AQ)(Qᵀz), kept as the space grows; R_k z = (I − QQᵀ) y (Q ⟂ U, so raw z)
    y = target.measure(
        lambda a, b: noise.columns(a, b, dtype=dtype, device=device),
        pilots,
        "op @ z (krylov pilot probes)",
    )
    rho = [float(y.square().sum(dtype=torch.float64)) / pilots]
    basis = torch.empty((target.dim, width * max_steps), dtype=dtype, device=device)
    start = RademacherNoise(width, target.dim, seed, KRYLOV_TRACE_STREAMS["start"])
    omega = target.project(start.columns(0, width, dtype=dtype, device=device).contiguous())
    basis[:, :width] = torch.linalg.qr(omega, mode="reduced").Q
    known = 0.0
    scale = 0.0
    steps = 0
    while True:
        c0, c1 = steps * width, (steps + 1) * width
        w = target.measure(
            lambda a, b, c0=c0: basis[:, c0 + a : c0 + b],
            width,
            f"op @ Q (Krylov block {steps + 1} of at most {max_steps})",
        )
        block = basis[:, c0:c1]
        known += float((block * w).sum(dtype=torch.float64))
        y -= w @ (block.T @ z)
        steps += 1
        done = basis[:, :c1]
        resid = y - done @ (done.T @ y)
        rho.append(float(resid.square().sum(dtype=torch.float64)) / pilots)
        if not _keep_growing(rho, steps, max_steps, num_products - c1, width, eps):
            break
        del resid
        scale = _extend(target, basis, c1, w, scale, generator)
        del w
    total = steps * width
    basis = basis[:, :total]
    probes = num_products - total
    samples = torch.empty(probes, dtype=torch.float64, device=device)
    samples[:pilots] = (z * resid).sum(0, dtype=torch.float64)
    del y, resid, z
    for s0 in range(pilots, probes, target.block):
        s1 = min(probes, s0 + target.block)
        x = target.project(noise.columns(s0, s1, dtype=dtype, device=device))
        x = x - basis @ (basis.T @ x)
        ax = target.apply(x, "op @ (I-QQ^T)z (krylov residual probes)", total + s0)
        samples[s0:s1] = (x * ax).sum(0, dtype=torch.float64)
    mean = float(samples.mean())
    err = float(samples.std() / math.sqrt(probes)) if probes > 1 else math.inf
    return known + mean, err, num_products, total
