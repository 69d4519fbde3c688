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
* :func:`open_store` — a store from a path, a store, or ``None``;
* :class:`StepStore` (:class:`MemoryStepStore`, :class:`ZarrStepStore`) and
  :func:`open_step_store` — named arrays committed step by step, for the sequential and
  multi-pass recoveries (block Krylov, HMT with power iterations: :mod:`.steps`).

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
from curvsketch.store.steps import ArraySpec, MemoryStepStore, StepStore
from curvsketch.store.zarr_steps import STEPS_FORMAT, ZarrStepStore, store_format
from curvsketch.store.zarr_store import ZarrStore

__all__ = [
    "STEPS_FORMAT",
    "ArraySpec",
    "DamagedBlocksError",
    "MeasurementStore",
    "MemoryStepStore",
    "MemoryStore",
    "RunIdentity",
    "StepStore",
    "StoreMismatchError",
    "ZarrMatrix",
    "ZarrStepStore",
    "ZarrStore",
    "check_blocks",
    "check_chunks",
    "check_finite",
    "fingerprint",
    "open_step_store",
    "open_store",
    "store_format",
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


def open_step_store(store: Any, *, who: str = "seigh") -> StepStore:
    """Return a :class:`StepStore` for ``store`` (the recoveries ``"krylov"`` and ``"hmt"``).

    Args:
        store: a :class:`StepStore` (returned as is), ``"memory"`` (a new
            :class:`MemoryStepStore`) or a local path (a :class:`ZarrStepStore`).
        who: the caller, for messages.

    Raises:
        TypeError: anything else (e.g. a single-pass :class:`MeasurementStore`).
    """
    if isinstance(store, StepStore):
        return store
    if isinstance(store, str) and store == "memory":
        return MemoryStepStore()
    if isinstance(store, str | os.PathLike):
        return ZarrStepStore(store)
    raise TypeError(
        f"{who}: store must be a local path, 'memory' or a curvsketch.store.StepStore for "
        f"recovery='krylov' or 'hmt', got {type(store).__name__} (a MeasurementStore holds "
        "single-pass blocks only)"
    )
