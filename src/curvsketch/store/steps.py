"""Step stores: named arrays of a sequential or multi-pass sketch, filled step by step.

The single-pass store (:class:`~curvsketch.store.base.MeasurementStore`) holds blocks that
are independent of each other. Block Krylov (Musco & Musco, NeurIPS 2015, Alg. 2) and the
range finder with subspace iterations (Halko, Martinsson, Tropp, SIAM Review 2011,
Alg. 4.4) are not: block ``j + 1`` of a Krylov basis needs block ``j``, and a pass of
subspace iteration needs the whole previous pass. A :class:`StepStore` therefore keeps a
few named 2-D arrays (e.g. the Krylov basis ``Q`` and the projected matrix ``T``) and a set
of *steps*, each identified by a key (``"k000012"``: Krylov block 12; ``"p01b000003"``:
block 3 of pass 1). A step is *committed* atomically: its column ranges of the arrays are
written first, then its marker, which also holds the step's small metadata (a JSON dict:
a running scale, a random generator's state, a shift), so after a crash a step is either
complete, with everything the recurrence needs to continue, or absent.

Which steps exist and what they write is the sketch's business (:mod:`curvsketch.sketch.
stored_krylov`, :mod:`curvsketch.sketch.stored_hmt`); the store only checks the run
identity (:class:`~curvsketch.store.identity.RunIdentity`) and commits. Implementations:
:class:`MemoryStepStore` here and :class:`~curvsketch.store.zarr_steps.ZarrStepStore` on
disk.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from curvsketch.store.base import numpy_dtype
from curvsketch.store.identity import RunIdentity

__all__ = ["ArraySpec", "MemoryStepStore", "StepStore"]


class ArraySpec(NamedTuple):
    """Shape of one named array of a step store and the width of its column chunks
    (a step should write whole chunk columns, so that steps own disjoint chunks)."""

    rows: int
    cols: int
    chunk_cols: int


def as_host(x: Any, dtype: np.dtype) -> np.ndarray:
    """A numpy array of ``x`` (a tensor or array) in ``dtype``, on the host."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


class StepStore(ABC):
    """Named arrays of one run, committed step by step (see the module docstring).

    Call :meth:`bind` with the run's identity and its arrays before anything else: a new
    store records them, an existing one refuses another run
    (:class:`~curvsketch.store.identity.StoreMismatchError`, every differing field named).
    """

    #: Whether other processes see this store's commits (a path on a shared file system).
    shared = False
    #: Steps the last measuring call on this object computed (not reused), for reports.
    measured = 0

    def __init__(self) -> None:
        self._identity: RunIdentity | None = None

    @property
    def identity(self) -> RunIdentity:
        """The bound run identity."""
        if self._identity is None:
            raise RuntimeError(f"{self!r} is not bound to a run yet: call bind(identity) first")
        return self._identity

    @property
    def location(self) -> str:
        """Where the store lives, for messages."""
        return repr(self)

    def peek_identity(self) -> RunIdentity | None:
        """The identity the store already holds (without binding), or ``None`` if none."""
        return self._identity

    def check_compatible(self, identity: RunIdentity) -> None:
        """Refuse ``identity`` if the store holds another run, comparing every field but
        the probe digest (which needs a product; :meth:`bind` compares it)."""
        stored = self.peek_identity()
        if stored is not None:
            identity.check_matches(stored, self.location, probe=False)

    @abstractmethod
    def bind(self, identity: RunIdentity, arrays: Mapping[str, ArraySpec]) -> None:
        """Create the store for ``identity`` with ``arrays``, or check it holds that run."""

    @abstractmethod
    def done_steps(self) -> dict[str, dict[str, Any]]:
        """``{key: metadata}`` of the committed steps (empty for a store not created yet)."""

    @abstractmethod
    def _write(self, name: str, col: int, data: np.ndarray) -> None:
        """Write ``data`` into columns ``[col, col + data.shape[1])`` of array ``name``."""

    @abstractmethod
    def _mark(self, key: str, meta: dict[str, Any]) -> None:
        """Mark step ``key`` committed with ``meta`` (the last, atomic step)."""

    @abstractmethod
    def unmark(self, key: str) -> None:
        """Remove the marker of step ``key`` (it is computed again by the next run)."""

    @abstractmethod
    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Columns ``[start, stop)`` of array ``name`` (all rows)."""

    def commit(
        self, key: str, writes: Mapping[str, tuple[int, Any]], meta: dict[str, Any] | None = None
    ) -> None:
        """Write the column ranges of step ``key``, then mark it done with ``meta``.

        Args:
            key: the step.
            writes: ``{array name: (first column, (rows, n) tensor or array)}``.
            meta: small JSON-serialisable metadata kept with the marker.
        """
        dt = numpy_dtype(self.identity.dtype)
        for name, (col, data) in writes.items():
            self._write(name, int(col), as_host(data, dt))
        self._mark(key, dict(meta or {}))


class MemoryStepStore(StepStore):
    """A :class:`StepStore` in memory (numpy arrays; one process only)."""

    def __init__(self) -> None:
        super().__init__()
        self._arrays: dict[str, np.ndarray] = {}
        self._done: dict[str, dict[str, Any]] = {}

    def bind(self, identity: RunIdentity, arrays: Mapping[str, ArraySpec]) -> None:
        """Allocate for ``identity`` on first use; afterwards refuse any other identity."""
        if self._identity is not None:
            identity.check_matches(self._identity, "in memory")
            return
        dt = numpy_dtype(identity.dtype)
        self._arrays = {k: np.zeros((s.rows, s.cols), dtype=dt) for k, s in arrays.items()}
        self._identity = identity

    def done_steps(self) -> dict[str, dict[str, Any]]:
        """Committed steps and their metadata."""
        return dict(self._done)

    def _write(self, name: str, col: int, data: np.ndarray) -> None:
        self._arrays[name][:, col : col + data.shape[1]] = data

    def _mark(self, key: str, meta: dict[str, Any]) -> None:
        self._done[key] = meta

    def unmark(self, key: str) -> None:
        """Forget step ``key``."""
        self._done.pop(key, None)

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Columns ``[start, stop)`` of ``name``."""
        return self._arrays[name][:, start:stop]

    def __repr__(self) -> str:
        return "MemoryStepStore()"
