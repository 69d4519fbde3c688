"""An in-memory measurement store: same interface as the Zarr store, nothing on disk."""

from __future__ import annotations

import numpy as np

from curvsketch.store.base import MeasurementStore, numpy_dtype
from curvsketch.store.identity import RunIdentity

__all__ = ["MemoryStore"]


class MemoryStore(MeasurementStore):
    """Holds ``Y`` and ``Z`` as numpy arrays; useful for tests and for resuming inside one
    process (e.g. after a :class:`NonFiniteMeasurementError` in a late block)."""

    def __init__(self) -> None:
        super().__init__()
        self._y: np.ndarray | None = None
        self._z: np.ndarray | None = None
        self._done: set[int] = set()

    def bind(self, identity: RunIdentity) -> None:
        """Allocate for ``identity`` on first use; afterwards refuse any other identity."""
        if self._identity is not None:
            identity.check_matches(self._identity, "in memory")
            return
        dt = numpy_dtype(identity.dtype)
        self._y = np.zeros((identity.dim, identity.outer), dtype=dt)
        self._z = np.zeros((identity.inner, identity.inner), dtype=dt)
        self._identity = identity

    def done_blocks(self) -> set[int]:
        """Committed blocks."""
        return set(self._done)

    def _write(self, block: int, y: np.ndarray | None, z: np.ndarray) -> None:
        assert self._y is not None and self._z is not None
        i0, i1 = self.identity.block_range(block)
        if y is not None:
            c0, c1 = self.y_columns(block)
            self._y[:, c0:c1] = y
        self._z[:, i0:i1] = z

    def _mark_done(self, block: int) -> None:
        self._done.add(block)

    def _unmark(self, block: int) -> None:
        self._done.discard(block)

    def read_y(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` of ``Y``."""
        assert self._y is not None
        return self._y[start:stop]

    def read_z(self) -> np.ndarray:
        """``Z``."""
        assert self._z is not None
        return self._z

    def __repr__(self) -> str:
        return "MemoryStore()"
