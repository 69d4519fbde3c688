"""Measurement stores: sketches written one block at a time, resumable and shareable.

* :class:`MemoryStore` — in memory;
* :class:`ZarrStore` — a chunked Zarr v3 group on local disk, blocks committed atomically;
* :class:`RunIdentity` and :func:`fingerprint` — what a store refuses to mix (hashes,
  model and loss descriptions, a probe product: :mod:`.identity`, :mod:`.describe`,
  :mod:`.probe`);
* :func:`check_blocks` (:func:`check_chunks`, :func:`check_finite`) and
  :class:`DamagedBlocksError` — done blocks whose data are
  missing, truncated or not finite (:mod:`.integrity`);
* :class:`ZarrMatrix` — a read-only, tensor-like view of a 2-D Zarr array (results whose
  basis stays on disk);
* :func:`open_store` — a store from a path, a store, or ``None``.

Used by :func:`curvsketch.sketch.seigh` (``store=``) and
:mod:`curvsketch.sketch.stored` (``measure`` / ``recover``).
"""

from __future__ import annotations

import os
from typing import Any

from curvsketch.store.base import MeasurementStore
from curvsketch.store.identity import RunIdentity, StoreMismatchError, fingerprint
from curvsketch.store.integrity import DamagedBlocksError, check_blocks, check_chunks, check_finite
from curvsketch.store.matrix import ZarrMatrix
from curvsketch.store.memory import MemoryStore
from curvsketch.store.zarr_store import ZarrStore

__all__ = [
    "DamagedBlocksError",
    "MeasurementStore",
    "MemoryStore",
    "RunIdentity",
    "StoreMismatchError",
    "ZarrMatrix",
    "ZarrStore",
    "check_blocks",
    "check_chunks",
    "check_finite",
    "fingerprint",
    "open_store",
]


def open_store(store: Any) -> MeasurementStore:
    """Return a :class:`MeasurementStore` for ``store``.

    Args:
        store: a :class:`MeasurementStore` (returned as is), the string ``"memory"``
            (a new :class:`MemoryStore`) or a local path (a :class:`ZarrStore`).

    Raises:
        TypeError: anything else.
    """
    if isinstance(store, MeasurementStore):
        return store
    if isinstance(store, str) and store == "memory":
        return MemoryStore()
    if isinstance(store, str | os.PathLike):
        return ZarrStore(store)
    raise TypeError(
        f"store must be a local path, 'memory' or a MeasurementStore, got {type(store).__name__}"
    )
