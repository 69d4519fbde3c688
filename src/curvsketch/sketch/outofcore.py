"""Out-of-core single-pass recovery: the outer sketch, its basis and the eigenvectors stay
on disk; memory holds a few row blocks of ``D × o`` per worker and the small ``s × o`` /
``o × o`` factors. The block stages run as Dask task graphs (threaded scheduler, parallel
over row blocks) that read and write the store's Zarr arrays.

QR: Direct TSQR (Demmel, Grigori, Hoemmen, Langou, "Communication-optimal parallel and
sequential QR and LU factorizations", SIAM J. Sci. Comput. 34(1), 2012; Benson, Gleich,
Demmel, "Direct QR factorizations for tall-and-skinny matrices in MapReduce
architectures", IEEE BigData 2013, "Direct TSQR" — the algorithm of
:func:`dask.array.linalg.tsqr`): (1) each row block ``Y_i = Q1_i R_i`` (Householder,
:func:`torch.linalg.qr`), ``Q1_i`` written to a scratch Zarr array; (2) the stacked
``[R_1; …; R_m] = Q2 R`` by :func:`dask.array.linalg.tsqr` itself (``m·o × o``, in
memory; Dask recurses when it is tall); (3) ``Q_i = Q1_i Q2_i`` written to the store.
Unlike the indirect form ``Q = Y R⁻¹`` it is as accurate as a Householder QR of ``Y``
(sketches of Hessians are badly conditioned).

Why not ``dask.array.linalg.tsqr(da.from_zarr(Y))`` as a whole: its graph has the same
three stages, but stage (3) needs ``Q1_i`` *and* ``Q2``, and ``Q2`` needs every ``R_i``,
so the scheduler holds every ``Q1_i`` in memory until the second level is done — ``D·o``
entries whatever the chunking (the threaded scheduler does not spill to disk); and its
block QR, ``numpy.linalg.qr``, computes float32 in float64 with ~7.6 blocks of
temporaries. With blocks of :func:`tsqr_rows` rows (a quarter of the budget per worker)
the staged form stays within the budget, independent of ``D``; Dask's ``tsqr`` grows with
``D`` (it cannot stay within a budget below ``D·o``). Computing ``R`` alone culls the
``Q1_i`` and stays bounded by blocks, but the indirect ``Q = Y R⁻¹`` loses orthogonality
in proportion to ``cond(Y)`` (``‖QᵀQ−I‖₂`` 8.0e-3 against 2.8e-6 for this module on a
float32 ``Y`` with ``cond ≈ 10⁶``, ``o = 200``). Hence the staged form above: Dask's own
``tsqr`` for the second level, Dask graphs over the row blocks for the first and third,
``Q1`` persisted to Zarr in between. Its orthogonality is that of a float32 Householder
QR (the in-memory path's ``torch.linalg.qr``); Dask's is better only because numpy
computes in float64. Peak memory and seconds of each variant, measured:
benchmarks/results/docstring_timings.md.

Core (Tropp, Yurtsever, Udell, Cevher 2019): ``ΦQ`` and ``ΨQ`` from column blocks of ``Q``
(``D × b`` in memory), then the small solve of :func:`.factors.core_solve`. Eigenvectors:
``U = Q W`` in row blocks (a Dask graph), written to the store.
"""

from __future__ import annotations

import os

import dask
import dask.array as da
import numpy as np
import torch
import zarr

from curvsketch.sketch.factors import apply_test_operators, core_solve, eigh_by_magnitude
from curvsketch.sketch.noise import NoiseOperator
from curvsketch.sketch.timing import split_threads, stage_timer
from curvsketch.store import ZarrMatrix, ZarrStore

__all__ = [
    "direct_tsqr",
    "recover_singlepass_out_of_core",
    "tsqr_rows",
    "tsqr_workers",
    "tsqr_zarr",
]

#: Most row blocks processed at once (each holds its block, ``Q1_i`` and LAPACK workspace).
MAX_WORKERS = 8


def tsqr_rows(dim: int, outer: int, itemsize: int, memory_budget: int, workers: int = 1) -> int:
    """Rows per TSQR block: as many as fit a quarter of ``memory_budget / workers`` (each
    of the ``workers`` concurrent blocks holds the block, its ``Q1`` and workspace), at
    least ``outer`` (each block must be tall) and at most ``D``."""
    fit = memory_budget // max(1, 4 * outer * itemsize * max(1, workers))
    return int(max(outer, min(dim, fit)))


def tsqr_workers(dim: int, outer: int, itemsize: int, memory_budget: int) -> int:
    """Row blocks processed concurrently: at most the CPU count (and :data:`MAX_WORKERS`),
    and only as many as leave each block at least ``min(D, 4·o)`` rows under the budget."""
    cpus = min(MAX_WORKERS, os.cpu_count() or 1)
    per_worker = 4 * outer * itemsize * min(dim, 4 * outer)
    return int(max(1, min(cpus, memory_budget // max(1, per_worker))))


def _tensor(block: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(block if block.flags.writeable else block.copy())


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


def _block_qr(block: np.ndarray, q1: zarr.Array, outer: int, block_info=None) -> np.ndarray:
    """Stage (1) on one row block: write ``Q1_i`` to ``q1``, return ``R_i`` (``o × o``; a
    block shorter than ``o`` gets zero rows in ``R_i`` and zero columns in ``Q1_i``).

    Householder QR by :func:`torch.linalg.qr`, in the block's precision and about one
    block of extra memory (``numpy.linalg.qr``, which Dask's ``tsqr`` calls, computes
    float32 in float64 with several block-sized temporaries: 7.6 blocks measured)."""
    r0, r1 = block_info[0]["array-location"][0]
    q, r = torch.linalg.qr(_tensor(block), mode="reduced")
    k = q.shape[1]
    if k < outer:
        q = torch.nn.functional.pad(q, (0, outer - k))
        r = torch.nn.functional.pad(r, (0, 0, 0, outer - k))
    q1[r0:r1, :] = q.numpy()
    return r.numpy()


def _times(block: np.ndarray, right: np.ndarray) -> np.ndarray:
    """A row block times a small matrix (stages (3) and ``U = Q W``)."""
    return (_tensor(block) @ _tensor(right)).numpy()


def tsqr_zarr(
    y: zarr.Array,
    group: zarr.Group,
    rows: int,
    col_chunk: int,
    *,
    workers: int = 1,
    name: str = "Q",
) -> np.ndarray:
    """Orthonormal basis of a tall Zarr array ``y`` (``D × o``) by Direct TSQR, with each
    stage a Dask graph over row blocks; ``Q`` is written to ``group[name]``.

    Args:
        y: the ``D × o`` array (``D >= o``).
        group: where ``Q`` and the scratch array ``tsqr_Q1`` (removed at the end) go.
        rows: rows per block (``>= o``); ``workers`` blocks are in memory at once.
        col_chunk: column chunk of ``Q`` (column blocks are read by the core step).
        workers: threads of Dask's threaded scheduler.
        name: the array of ``Q``.

    Returns:
        The ``R`` factor (``o × o``), ``Y = Q R``.
    """
    dim, outer = (int(n) for n in y.shape)
    rows = max(outer, min(dim, int(rows)))
    workers = max(1, int(workers))
    with split_threads(workers):
        return _tsqr_zarr(y, group, rows, col_chunk, workers, name)


def _tsqr_zarr(y, group, rows: int, col_chunk: int, workers: int, name: str) -> np.ndarray:
    dim, outer = (int(n) for n in y.shape)
    dtype = y.dtype
    run = {"scheduler": "threads", "num_workers": workers}
    q1z = _array(group, "tsqr_Q1", (dim, outer), (rows, outer), dtype)
    yd = da.from_zarr(y, chunks=(rows, outer))
    nblocks = yd.numblocks[0]
    # (1) block QRs: Q1_i to Zarr, the R_i (o × o each) stacked in memory.
    rs = yd.map_blocks(_block_qr, q1z, outer, chunks=((outer,) * nblocks, (outer,)), dtype=dtype)
    (stacked,) = dask.compute(rs, **run)
    # (2) QR of the stacked R factors with Dask's own TSQR (recursive if the stack is tall).
    q2d, rd = da.linalg.tsqr(da.from_array(stacked, chunks=(max(rows, 2 * outer), outer)))
    q2, r = dask.compute(q2d, rd, **run)
    # (3) Q_i = Q1_i Q2_i, block by block, into the store (whole chunks: no lock needed).
    q1d = da.from_zarr(q1z, chunks=(rows, outer))
    q2b = da.from_array(np.ascontiguousarray(q2), chunks=(outer, outer))
    q = da.blockwise(_times, "ij", q1d, "ij", q2b, "ij", dtype=dtype, align_arrays=False)
    qz = _array(group, name, (dim, outer), (rows, col_chunk), dtype)
    da.store(q, qz, lock=False, **run)
    del group["tsqr_Q1"]
    return r


def direct_tsqr(store: ZarrStore, rows: int, col_chunk: int, workers: int = 1) -> torch.Tensor:
    """Orthonormal basis of the store's ``Y`` by Direct TSQR (:func:`tsqr_zarr`), written
    to array ``"Q"``.

    Args:
        store: a bound, complete Zarr store.
        rows: rows per block (``>= o``).
        col_chunk: column chunk of ``Q`` (column blocks are read by the core step).
        workers: row blocks processed at once.

    Returns:
        The ``R`` factor (``o × o``), for diagnostics.
    """
    r = tsqr_zarr(store.y_array(), store.group, rows, col_chunk, workers=workers)
    return torch.from_numpy(np.ascontiguousarray(r))


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
        memory_budget: bytes allowed for the row blocks of the ``D × o`` sketch (and their
            factors) in memory at once: sets the TSQR row block and how many run at once.
        block_size: columns of ``Q`` per test-operator application.
        timings: optional dict; adds ``qr``, ``core``, ``eigh`` and ``eigvec`` seconds.

    Returns:
        ``(λ sorted by |λ|, U)`` with the eigenvectors ``U`` (``D × o``) in the store's
        array ``"eigenvectors"``, as a :class:`ZarrMatrix`.
    """
    ident = store.identity
    dim, outer, s = ident.dim, ident.outer, ident.inner
    itemsize = np.dtype(store.y_array().dtype).itemsize
    workers = tsqr_workers(dim, outer, itemsize, memory_budget)
    rows = tsqr_rows(dim, outer, itemsize, memory_budget, workers)
    cols = max(1, min(outer, block_size))
    with stage_timer(timings, "qr"):
        direct_tsqr(store, rows, cols, workers)
    qz = store.group["Q"]
    with stage_timer(timings, "core"):
        z = torch.from_numpy(store.read_z())
        phi_q = torch.empty((s, outer), dtype=z.dtype)
        psi_q = torch.empty((s, outer), dtype=z.dtype)
        for c0 in range(0, outer, cols):
            c1 = min(outer, c0 + cols)
            qc = torch.from_numpy(np.asarray(qz[:, c0:c1]))
            phi_q[:, c0:c1], psi_q[:, c0:c1] = apply_test_operators(
                phi, psi, qc, s, block_size=block_size
            )
            del qc
        core = core_solve(phi_q, z, psi_q)
    values, w = eigh_by_magnitude(core, timings)
    with stage_timer(timings, "eigvec"):
        uz = _array(store.group, "eigenvectors", (dim, outer), (rows, outer), qz.dtype)
        qd = da.from_zarr(qz, chunks=(rows, outer))
        u = qd.map_blocks(_times, w.numpy(), dtype=qz.dtype)
        with split_threads(workers):
            da.store(u, uz, lock=False, scheduler="threads", num_workers=workers)
    return values, ZarrMatrix(uz)
