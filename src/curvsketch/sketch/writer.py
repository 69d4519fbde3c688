"""The background writer of :mod:`.stored`: blocks are committed while products go on."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.store import MeasurementStore

__all__ = ["MAX_PENDING", "BlockWriter", "StepWriter"]

#: Blocks in flight to the store (copied off the device, not yet written).
MAX_PENDING = 2


class BlockWriter:
    """Commits blocks on a background thread so products keep running meanwhile.

    CUDA blocks are copied to pinned host memory with ``non_blocking=True``; the thread
    waits on the copy's event, not on the whole device.
    """

    def __init__(self, store: MeasurementStore, bar: Progress) -> None:
        self.store, self.bar = store, bar
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="curvsketch-store")
        self.pending: list[Future[None]] = []
        self.pinned: dict[tuple, list[torch.Tensor]] = {}  # reused page-locked buffers

    def _host(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        if x.device.type != "cuda":
            return x, None
        key = (tuple(x.shape), x.dtype)
        pool = self.pinned.setdefault(key, [])
        buf = pool.pop() if pool else torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
        buf.copy_(x, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return buf, event

    def _commit(self, block: int, y: torch.Tensor, z: torch.Tensor, events: list) -> None:
        for e in events:
            if e is not None:
                e.synchronize()
        self.store.commit_block(block, y, z)
        for x, e in zip((y, z), events, strict=True):
            if e is not None:  # the buffer is free again
                self.pinned.setdefault((tuple(x.shape), x.dtype), []).append(x)
        self.bar.update(1)

    def submit(self, block: int, y: torch.Tensor, z: torch.Tensor) -> None:
        while len(self.pending) >= MAX_PENDING:
            self.pending.pop(0).result()
        c0, c1 = self.store.y_columns(block)
        y_host, ey = self._host(y[:, : c1 - c0]) if c1 > c0 else (y[:, :0].cpu(), None)
        z_host, ez = self._host(z)
        self.pending.append(self.pool.submit(self._commit, block, y_host, z_host, [ey, ez]))

    def close(self) -> None:
        try:
            for f in self.pending:
                f.result()
        finally:
            self.pool.shutdown(wait=True)


class StepWriter:
    """Commits the steps of a :class:`curvsketch.store.StepStore` on a background thread,
    in order (a step's marker never precedes an earlier step's), at most
    :data:`MAX_PENDING` in flight. Device tensors are copied to the host when submitted;
    host tensors are passed as they are (the recoveries never write a committed column
    range again).

    Args:
        store: the bound step store, or ``None`` (this process does not write: every
            submit only counts).
        bar: progress, advanced by one per committed step.
    """

    def __init__(self, store: Any, bar: Progress | None) -> None:
        self.store, self.bar = store, bar
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="curvsketch-steps")
        self.pending: list[Future[None]] = []

    def _commit(self, key: str, writes: dict[str, tuple[int, Any]], meta: dict) -> None:
        if self.store is not None:
            self.store.commit(key, writes, meta)
        if self.bar is not None:
            self.bar.update(1)

    def submit(
        self, key: str, writes: dict[str, tuple[int, torch.Tensor]], meta: dict | None = None
    ) -> None:
        """Queue step ``key``: ``{array: (first column, data)}`` and its metadata."""
        while len(self.pending) >= MAX_PENDING:
            self.pending.pop(0).result()
        host = {k: (c, x.detach().to("cpu")) for k, (c, x) in writes.items()}
        self.pending.append(self.pool.submit(self._commit, key, host, dict(meta or {})))

    def flush(self) -> None:
        """Wait until every submitted step is committed (raises a failed commit's error)."""
        while self.pending:
            self.pending.pop(0).result()

    def close(self) -> None:
        """:meth:`flush`, then stop the thread."""
        try:
            self.flush()
        finally:
            self.pool.shutdown(wait=True)
