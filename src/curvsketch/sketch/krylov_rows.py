"""Row blocks of an on-disk Krylov basis, and how many rows fit a memory budget.

Used by :mod:`.krylov_outofcore` (out-of-core block Krylov, Musco & Musco, NeurIPS 2015,
Alg. 2): classical Gram–Schmidt of a ``D × b`` block against a ``D × c`` basis that stays in
a Zarr array, ``C = Σ_r Q_rᵀ W_r`` then ``W_r −= Q_r C``, reading each row block ``Q_r``
once per product. Zarr reads whole chunks (no partial reads of a plain chunk), so row
blocks are whole row chunks where the budget allows; the reads go into reused buffers (a
fresh array per read page-faults its whole size each time) with few chunks in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import zarr
from zarr.core.buffer import default_buffer_prototype

__all__ = ["FIXED_BLOCKS", "MIN_ROWS", "READ_CONCURRENCY", "RowBlocks", "row_block_rows"]

#: ``D × b`` blocks in memory at once: ``[Q_{j−1}, Q_j]``, ``W``, the operator's output
#: block, the QR's factor and workspace (:mod:`.krylov_outofcore`).
FIXED_BLOCKS = 6
#: Fewest rows of a row block of the basis the budget must allow (or ``D`` if smaller).
MIN_ROWS = 256
#: Zarr chunks read at once (its default, 10, holds ~10 more chunks of ~16 MiB in flight:
#: measured +235 MB on a 671 MB row block, +17 MB with 2).
READ_CONCURRENCY = 2


def row_block_rows(
    dim: int,
    total: int,
    width: int,
    itemsize: int,
    memory_budget: int,
    chunk_rows: int | None = None,
) -> tuple[int, bool]:
    """Rows per row block of the basis, and whether the next block is read ahead.

    The budget holds :data:`FIXED_BLOCKS` ``D × b`` blocks, :data:`READ_CONCURRENCY`
    chunks being read (``chunk_rows × b``; default ``chunk_rows = D``) and the row blocks
    (``rows × m`` each). Rows are a multiple of the basis's row chunk ``chunk_rows`` when
    at least one chunk fits (whole chunks are read); two row blocks (read-ahead) only when
    each can still hold a whole chunk.

    Raises:
        ValueError: the budget cannot hold the fixed blocks and :data:`MIN_ROWS` rows.
    """
    chunk = min(dim, chunk_rows or dim)
    fixed = FIXED_BLOCKS * dim * width * itemsize + READ_CONCURRENCY * chunk * width * itemsize
    per_row = total * itemsize
    least = min(dim, MIN_ROWS)
    if memory_budget < fixed + least * per_row:
        raise ValueError(
            f"memory_budget={memory_budget} bytes is too small for the out-of-core Krylov "
            f"recovery (D={dim}, basis m={total}, block b={width}, {itemsize}-byte entries): "
            f"it holds {FIXED_BLOCKS} D × b blocks and {READ_CONCURRENCY} chunks being read "
            f"({fixed} bytes) plus a row block of at "
            f"least {least} rows of the basis ({least * per_row} bytes); pass "
            f"memory_budget >= {fixed + least * per_row} or a smaller block_size"
        )
    free = memory_budget - fixed
    two = free // (2 * per_row)
    if chunk_rows and two >= chunk and chunk < dim:
        return min(dim, two - two % chunk), True
    rows = min(dim, free // per_row)
    if chunk_rows and rows >= chunk:
        rows -= rows % chunk
    return int(rows), False


class RowBlocks:
    """Row blocks of the first columns of the on-disk basis, read ahead on a thread.

    Args:
        array: the ``D × m`` Zarr array ``Q`` of the step store.
        rows: rows per block.
        ahead: read block ``r + 1`` while block ``r`` is used (two blocks in memory).
        like: a tensor whose dtype and device the blocks get.
        timings: optional dict; adds ``read`` seconds (waiting for reads).
    """

    def __init__(
        self,
        array: Any,
        rows: int,
        ahead: bool,
        like: torch.Tensor,
        timings: dict[str, float] | None = None,
    ) -> None:
        self.array, self.rows, self.ahead = array, int(rows), bool(ahead)
        self.dtype, self.device = like.dtype, like.device
        self.timings = timings
        self.dim = int(array.shape[0])
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="curvsketch-rows")
        self.reads = 0
        # Reused buffers: a fresh array per read page-faults its whole size every time.
        shape = (min(self.rows, self.dim), int(array.shape[1]))
        self.buffers = [np.empty(shape, dtype=array.dtype) for _ in range(2 if ahead else 1)]

    def _read(self, r0: int, r1: int, c1: int, slot: int = 0) -> torch.Tensor:
        view = self.buffers[slot][: r1 - r0, :c1]
        out = default_buffer_prototype().nd_buffer.from_numpy_array(view)
        with zarr.config.set({"async.concurrency": READ_CONCURRENCY}):
            self.array.get_basic_selection((slice(r0, r1), slice(0, c1)), out=out)
        return torch.from_numpy(view).to(dtype=self.dtype, device=self.device)

    def each(self, c1: int, fn: Callable[[int, int, torch.Tensor], Any]) -> None:
        """Call ``fn(r0, r1, Q[r0:r1, :c1])`` for every row block, in order."""
        ranges = [(r0, min(self.dim, r0 + self.rows)) for r0 in range(0, self.dim, self.rows)]
        pending: Future[torch.Tensor] | None = None
        if self.ahead:
            pending = self.pool.submit(self._read, *ranges[0], c1, 0)
        for i, (r0, r1) in enumerate(ranges):
            t0 = time.perf_counter()
            block = pending.result() if pending is not None else self._read(r0, r1, c1)
            pending = None
            if self.timings is not None:
                self.timings["read"] = self.timings.get("read", 0.0) + time.perf_counter() - t0
            if self.ahead and i + 1 < len(ranges):  # into the other buffer (fn(i - 1) is done)
                pending = self.pool.submit(self._read, *ranges[i + 1], c1, (i + 1) % 2)
            fn(r0, r1, block)
            del block
            self.reads += 1

    def coefficients(self, w: torch.Tensor, c1: int) -> torch.Tensor:
        """``Q[:, :c1]ᵀ w`` summed over the row blocks."""
        coef = torch.zeros((c1, w.shape[1]), dtype=w.dtype, device=w.device)
        self.each(c1, lambda r0, r1, q: coef.addmm_(q.T, w[r0:r1]))
        return coef

    def subtract(self, w: torch.Tensor, coef: torch.Tensor, c1: int) -> None:
        """``w −= Q[:, :c1] coef`` in place, row block by row block."""
        self.each(c1, lambda r0, r1, q: w[r0:r1].addmm_(q, coef, alpha=-1))

    def project(self, x: torch.Tensor, c1: int) -> None:
        """``x −= Q Qᵀ x`` in place (``Q = Q[:, :c1]``): two reads of the basis."""
        self.subtract(x, self.coefficients(x, c1), c1)

    def close(self) -> None:
        """Stop the read-ahead thread and free the buffers."""
        self.pool.shutdown(wait=True)
        self.buffers = []
