"""Out-of-core single-pass recovery: the outer sketch, its basis and the eigenvectors stay
on disk; memory holds one row block of ``D × o`` and the small ``s × o`` / ``o × o`` factors.

QR: Direct TSQR (Demmel, Grigori, Hoemmen, Langou, "Communication-optimal parallel and
sequential QR and LU factorizations", SIAM J. Sci. Comput. 34(1), 2012; Benson, Gleich,
Demmel, "Direct QR factorizations for tall-and-skinny matrices in MapReduce
architectures", IEEE BigData 2013, "Direct TSQR"): (1) each row block ``Y_i = Q1_i R_i``,
``Q1_i`` written to a scratch array; (2) the stacked ``[R_1; …; R_m] = Q2 R``; (3)
``Q_i = Q1_i Q2_i`` written to the store. Unlike the indirect form ``Q = Y R⁻¹`` it is as
accurate as a Householder QR of ``Y`` (sketches of Hessians are badly conditioned). Dask's
``tsqr`` computes the same factorisation, but as one task graph whose scheduler keeps every
``Q1_i`` in memory until the second level is done (peak ``D·o``), so the levels are run
here explicitly, each from and to Zarr.

Core (Tropp, Yurtsever, Udell, Cevher 2019): ``ΦQ`` and ``ΨQ`` from column blocks of ``Q``
(``D × b`` in memory), then the small solve of :func:`.recovery.core_solve`. Eigenvectors:
``U = Q W`` in row blocks, written to the store.
"""

from __future__ import annotations

import numpy as np
import torch

from curvsketch.sketch.noise import NoiseOperator
from curvsketch.sketch.recovery import core_solve, sort_by_magnitude, stage_timer
from curvsketch.store import ZarrMatrix, ZarrStore

__all__ = ["direct_tsqr", "recover_singlepass_out_of_core", "tsqr_rows"]


def tsqr_rows(dim: int, outer: int, itemsize: int, memory_budget: int) -> int:
    """Rows per TSQR block: as many as fit a quarter of ``memory_budget`` (the block, its
    ``Q1`` and workspace), at least ``outer`` (each block must be tall) and at most ``D``."""
    fit = memory_budget // max(1, 4 * outer * itemsize)
    return int(max(outer, min(dim, fit)))


def _array(group, name: str, shape: tuple[int, int], chunks: tuple[int, int], dtype):
    return group.create_array(
        name,
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        fill_value=0.0,
        overwrite=True,
        compressors=None,
    )


def direct_tsqr(store: ZarrStore, rows: int, col_chunk: int) -> torch.Tensor:
    """Orthonormal basis of the store's ``Y`` by Direct TSQR, written to array ``"Q"``.

    Args:
        store: a bound, complete Zarr store.
        rows: rows per block (``>= o``).
        col_chunk: column chunk of ``Q`` (column blocks are read by the core step).

    Returns:
        The ``R`` factor (``o × o``), for diagnostics.
    """
    group, y = store.group, store.y_array()
    dim, outer = (int(n) for n in y.shape)
    starts = list(range(0, dim, rows))
    q1 = _array(group, "tsqr_Q1", (dim, outer), (rows, outer), y.dtype)
    rs = []
    for r0 in starts:
        r1 = min(dim, r0 + rows)
        block = torch.from_numpy(np.asarray(y[r0:r1, :]))
        q, r = torch.linalg.qr(block, mode="reduced")  # r1 - r0 < outer only in a last block
        k = q.shape[1]
        q1[r0:r1, :k] = q.numpy()
        rs.append(torch.nn.functional.pad(r, (0, 0, 0, outer - k)) if k < outer else r)
    q2, r = torch.linalg.qr(torch.cat(rs), mode="reduced")
    qz = _array(group, "Q", (dim, outer), (rows, col_chunk), y.dtype)
    for i, r0 in enumerate(starts):
        r1 = min(dim, r0 + rows)
        block = torch.from_numpy(np.asarray(q1[r0:r1, :]))
        qz[r0:r1, :] = (block @ q2[i * outer : (i + 1) * outer]).numpy()
    del group["tsqr_Q1"]
    return r


def recover_singlepass_out_of_core(
    store: ZarrStore,
    phi: NoiseOperator,
    psi: NoiseOperator,
    *,
    memory_budget: int,
    block_size: int,
    timings: dict[str, float] | None = None,
) -> tuple[torch.Tensor, ZarrMatrix]:
    """Single-pass recovery (SEIGH, Fernandez et al., TMLR 2025, Alg. 2) from a complete
    Zarr store, out of core.

    Args:
        store: bound and complete.
        phi: ``Φ`` (``s × D``).
        psi: ``Ψ`` (``s × D``).
        memory_budget: bytes allowed for a row block of the ``D × o`` sketch (and its
            factors): sets the TSQR row block.
        block_size: columns of ``Q`` per test-operator application.
        timings: optional dict; adds ``qr``, ``core``, ``eigh`` and ``eigvec`` seconds.

    Returns:
        ``(λ sorted by |λ|, U)`` with the eigenvectors ``U`` (``D × o``) in the store's
        array ``"eigenvectors"``, as a :class:`ZarrMatrix`.
    """
    ident = store.identity
    dim, outer, s = ident.dim, ident.outer, ident.inner
    itemsize = np.dtype(store.y_array().dtype).itemsize
    rows = tsqr_rows(dim, outer, itemsize, memory_budget)
    cols = max(1, min(outer, block_size))
    with stage_timer(timings, "qr"):
        direct_tsqr(store, rows, cols)
    qz = store.group["Q"]
    with stage_timer(timings, "core"):
        z = torch.from_numpy(store.read_z())
        phi_q = torch.empty((s, outer), dtype=z.dtype)
        psi_q = torch.empty((s, outer), dtype=z.dtype)
        for c0 in range(0, outer, cols):
            c1 = min(outer, c0 + cols)
            qc = torch.from_numpy(np.asarray(qz[:, c0:c1]))
            phi_q[:, c0:c1] = phi.matmul(qc, block_size=block_size)
            psi_q[:, c0:c1] = psi.matmul(qc, 0, s, block_size=block_size)
            del qc
        core = core_solve(phi_q, z, psi_q)
        core = (core + core.T) / 2
    with stage_timer(timings, "eigh"):
        values, w = torch.linalg.eigh(core)
    with stage_timer(timings, "eigvec"):
        values, w = sort_by_magnitude(values, w)
        uz = _array(store.group, "eigenvectors", (dim, outer), (rows, outer), qz.dtype)
        for r0 in range(0, dim, rows):
            r1 = min(dim, r0 + rows)
            uz[r0:r1, :] = (torch.from_numpy(np.asarray(qz[r0:r1, :])) @ w).numpy()
    return values, ZarrMatrix(uz)
