"""The product passes of each in-memory recovery of :func:`curvsketch.sketch.seigh`.

Each pass draws its test vectors from the ``(seed, stream)`` test operators of
:mod:`.noise`, measures operator products in blocks (counting them on a progress bar) and
hands the measurements to its recovery: :func:`.recovery.recover_singlepass` (single pass,
Fernandez et al., TMLR 2025, §3, Alg. 2; Tropp, Yurtsever, Udell, Cevher 2019),
:func:`.recovery.recover_hmt` (Halko, Martinsson, Tropp 2011, Alg. 4.4 + 5.3),
:func:`.recovery.recover_nystrom` (Tropp et al., NeurIPS 2017, Alg. 3) or
:func:`.krylov.block_krylov` (Musco & Musco, NeurIPS 2015, Alg. 2). ``ctx`` carries the
block size, dtype, device, timings and progress bar of the call.
"""

from __future__ import annotations

from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.krylov import block_krylov
from curvsketch.sketch.measure import apply_in_blocks, block_ranges, column_major, measure_block
from curvsketch.sketch.noise import (
    STREAM_OMEGA,
    STREAM_PHI,
    STREAM_PSI,
    NoiseOperator,
    make_noise,
)
from curvsketch.sketch.recovery import (
    Factors,
    orthonormal_basis,
    recover_hmt,
    recover_nystrom,
    recover_singlepass,
    stage_timer,
)

__all__ = [
    "hmt_pass",
    "krylov_pass",
    "measure_outer",
    "measure_singlepass",
    "nystrom_pass",
    "single_pass",
]


def measure_singlepass(
    op: Any,
    psi: NoiseOperator,
    phi: NoiseOperator,
    outer: int,
    *,
    block_size: int,
    dtype: torch.dtype,
    device: torch.device,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Measure the single-pass sketches ``Y = H Ψ[:outer]ᵀ`` and ``Z = Φ H Ψᵀ`` in memory.

    One product per row of ``Ψ`` (``s = psi.num_rows``), in blocks of ``block_size``; the
    first ``outer`` products are kept whole as ``Y``.

    Returns:
        ``(Y, Z)`` of shapes ``(D, outer)`` and ``(phi.num_rows, s)``.
    """
    dim, s = op.shape[0], psi.num_rows
    y_all = column_major((dim, outer), dtype=dtype, device=device)
    z_all = torch.empty((phi.num_rows, s), dtype=dtype, device=device)
    for i0, i1 in block_ranges(0, s, block_size):
        y, z = measure_block(op, psi, i0, i1, inner=phi, dtype=dtype, device=device)
        assert z is not None
        z_all[:, i0:i1] = z
        if i0 < outer:
            y_all[:, i0 : min(i1, outer)] = y[:, : min(i1, outer) - i0]
        if progress is not None:
            progress.update(i1 - i0)
    return y_all, z_all


def measure_outer(
    op: Any,
    omega: NoiseOperator,
    outer: int,
    *,
    block_size: int,
    dtype: torch.dtype,
    device: torch.device,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Measure the outer sketch ``Y = H Ω[:outer]ᵀ`` in memory, in blocks.

    Returns:
        ``Y`` of shape ``(D, outer)``.
    """
    y_all = column_major((op.shape[0], outer), dtype=dtype, device=device)
    for i0, i1 in block_ranges(0, outer, block_size):
        y_all[:, i0:i1] = measure_block(op, omega, i0, i1, dtype=dtype, device=device)[0]
        if progress is not None:
            progress.update(i1 - i0)
    return y_all


def single_pass(
    op: Any, recovery: str, noise: str, seed: int, outer: int, inner: int, ctx: dict[str, Any]
) -> Factors:
    """``"singlepass"`` (shared outer vectors) or ``"tropp"`` (independent ``Ω``)."""
    dim, timings, block = op.shape[0], ctx["timings"], ctx["block_size"]
    psi = make_noise(noise, inner, dim, seed, STREAM_PSI)
    phi = make_noise(noise, inner, dim, seed, STREAM_PHI)
    kw = {"block_size": block, "dtype": ctx["dtype"], "device": ctx["device"]}
    with stage_timer(timings, "measure"):
        if recovery == "tropp":
            omega = make_noise(noise, outer, dim, seed, STREAM_OMEGA)
            y = measure_outer(op, omega, outer, progress=ctx["bar"], **kw)
            _, z = measure_singlepass(op, psi, phi, 0, progress=ctx["bar"], **kw)
        else:
            y, z = measure_singlepass(op, psi, phi, outer, progress=ctx["bar"], **kw)
    return recover_singlepass(y, z, phi, psi, block_size=block, timings=timings)


def hmt_pass(
    op: Any, noise: str, seed: int, outer: int, power_iters: int, ctx: dict[str, Any]
) -> Factors:
    """Range finder, ``power_iters`` subspace iterations, Rayleigh–Ritz."""
    timings, block, bar = ctx["timings"], ctx["block_size"], ctx["bar"]
    psi = make_noise(noise, outer, op.shape[0], seed, STREAM_PSI)
    with stage_timer(timings, "measure"):
        y = measure_outer(
            op, psi, outer, block_size=block, dtype=ctx["dtype"], device=ctx["device"], progress=bar
        )
    with stage_timer(timings, "qr"):
        q = orthonormal_basis(y)
        del y
    for it in range(power_iters):
        with stage_timer(timings, "measure"):
            what = f"op @ Q (power iteration {it + 1})"
            hq = apply_in_blocks(op, q, block, what=what, on_block=bar.update)
        with stage_timer(timings, "qr"):
            q = orthonormal_basis(hq)
            del hq
    with stage_timer(timings, "measure"):
        hq = apply_in_blocks(op, q, block, what="op @ Q (Rayleigh-Ritz)", on_block=bar.update)
    return recover_hmt(q, hq, timings=timings)


def nystrom_pass(op: Any, noise: str, seed: int, outer: int, ctx: dict[str, Any]) -> Factors:
    """Stabilised Nyström from ``outer`` products."""
    dtype, device = ctx["dtype"], ctx["device"]
    psi = make_noise(noise, outer, op.shape[0], seed, STREAM_PSI)
    with stage_timer(ctx["timings"], "measure"):
        y = measure_outer(
            op,
            psi,
            outer,
            block_size=ctx["block_size"],
            dtype=dtype,
            device=device,
            progress=ctx["bar"],
        )
    omega = psi.columns(0, outer, dtype=dtype, device=device)
    return recover_nystrom(y, omega, timings=ctx["timings"])


def krylov_pass(
    op: Any, noise: str, seed: int, outer: int, blocks: int, width: int, ctx: dict[str, Any]
) -> Factors:
    """``blocks`` Krylov blocks of ``width`` from the first ``width`` rows of ``Ψ``."""
    psi = make_noise(noise, width, op.shape[0], seed, STREAM_PSI)
    start = psi.columns(0, width, dtype=ctx["dtype"], device=ctx["device"])
    return block_krylov(
        op,
        start,
        blocks,
        block_size=width,
        keep=outer,
        seed=seed,
        on_block=ctx["bar"].update,
        timings=ctx["timings"],
    )
