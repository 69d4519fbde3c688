"""Checks that the blocks a store marks done really hold their measurements.

A block's "done" marker says its data were written; it does not prove that they are still
there. A chunk file deleted, truncated or overwritten after the fact would read as zeros,
fail deep inside Zarr, or turn every eigenvalue into NaN. Before a recovery uses a store,
:func:`check_chunks` finds every done block with a chunk file missing or of the wrong
size (a ``stat`` per chunk, no data read; :meth:`ZarrStore.chunk_problems
<curvsketch.store.ZarrStore.chunk_problems>`) and :func:`check_finite` every one with
entries that are not finite (on arrays the recovery reads anyway); both raise
:class:`DamagedBlocksError`, which names each block, its product range and how to
measure it again (:meth:`MeasurementStore.unmark_blocks
<curvsketch.store.MeasurementStore.unmark_blocks>`, then ``measure`` again: only
unmarked blocks are measured).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

__all__ = [
    "DamagedBlocksError",
    "check_blocks",
    "check_chunks",
    "check_finite",
    "nonfinite_blocks",
]

#: Rows of ``Y`` checked at once (bounds the temporary boolean array to ``ROWS·o`` bytes).
ROWS = 1 << 16


class DamagedBlocksError(ValueError):
    """Blocks marked done in a store have missing, truncated or non-finite data.

    Attributes:
        blocks: the damaged blocks, sorted.
        problems: ``{block: what is wrong}``.
    """

    def __init__(self, store: Any, problems: dict[int, list[str]]) -> None:
        self.blocks = sorted(problems)
        self.problems = {b: "; ".join(problems[b]) for b in self.blocks}
        ident = store.identity
        parts = []
        for b in self.blocks[:10]:
            i0, i1 = ident.block_range(b)
            parts.append(f"block {b} (products [{i0}, {i1})): {self.problems[b]}")
        more = f"; and {len(self.blocks) - 10} more" if len(self.blocks) > 10 else ""
        super().__init__(
            f"the measurement store {store.location} has {len(self.blocks)} damaged block(s) "
            f"marked done: {'; '.join(parts)}{more}. Measure them again: "
            f"{store.unmark_hint(self.blocks)}, then run measure() (or `curvsketch measure`, "
            "or seigh with store=) again with the same settings: only these blocks are "
            "measured again"
        )


def _bad_columns(read: Callable[[int, int], np.ndarray], rows: int, cols: int) -> np.ndarray:
    """Number of non-finite entries per column of a ``rows × cols`` array read in slabs."""
    bad = np.zeros(cols, dtype=np.int64)
    for r0 in range(0, rows, ROWS):
        slab = read(r0, min(rows, r0 + ROWS))
        bad += (~np.isfinite(slab)).sum(axis=0)
    return bad


def nonfinite_blocks(
    store: Any,
    blocks: Iterable[int],
    *,
    y: np.ndarray | None = None,
    z: np.ndarray | None = None,
    read_y: bool = True,
) -> dict[int, list[str]]:
    """Done blocks whose columns of ``Y`` or ``Z`` hold NaN or Inf.

    Args:
        store: a bound store.
        blocks: the blocks to check.
        y: ``Y`` in memory (else read from the store in row slabs when ``read_y``).
        z: ``Z`` in memory (else read from the store).
        read_y: check ``Y`` at all (``False``: ``Z`` only, no pass over ``Y``).

    Returns:
        ``{block: [problems]}`` for the blocks with non-finite entries.
    """
    ident = store.identity
    blocks = sorted(blocks)
    problems: dict[int, list[str]] = {}
    zz = store.read_z() if z is None else z
    z_bad = _bad_columns(lambda a, b: zz[a:b], zz.shape[0], zz.shape[1])
    y_bad = None
    if y is not None:
        y_bad = _bad_columns(lambda a, b: y[a:b], y.shape[0], y.shape[1])
    elif read_y:
        y_bad = _bad_columns(store.read_y, ident.dim, ident.outer)
    for b in blocks:
        i0, i1 = ident.block_range(b)
        c0, c1 = store.y_columns(b)
        if y_bad is not None and (n := int(y_bad[c0:c1].sum())):
            problems.setdefault(b, []).append(f"{n} non-finite entries in Y columns [{c0}, {c1})")
        if n := int(z_bad[i0:i1].sum()):
            problems.setdefault(b, []).append(f"{n} non-finite entries in Z columns [{i0}, {i1})")
    return problems


def check_chunks(store: Any) -> None:
    """Raise :class:`DamagedBlocksError` if a done block has a chunk file missing or of
    the wrong size (one ``stat`` per chunk, no data read; nothing to do in memory)."""
    problems = store.chunk_problems(store.done_blocks())
    if problems:
        raise DamagedBlocksError(store, problems)


def check_finite(
    store: Any, *, y: np.ndarray | None = None, z: np.ndarray | None = None, read_y: bool = True
) -> None:
    """Raise :class:`DamagedBlocksError` if a done block has NaN or Inf entries.

    Cost: one pass over ``Y`` and ``Z`` — over the arrays given (already in memory, no
    extra read), else read from the store in row slabs (``read_y=False`` skips ``Y``).
    Call :func:`check_chunks` first: a truncated chunk cannot be read.

    Args:
        store: a bound store.
        y: ``Y`` as the recovery will use it, if already read.
        z: ``Z`` likewise.
        read_y: check ``Y`` when it is not given.
    """
    problems = nonfinite_blocks(store, store.done_blocks(), y=y, z=z, read_y=read_y)
    if problems:
        raise DamagedBlocksError(store, problems)


def check_blocks(store: Any) -> None:
    """:func:`check_chunks` then :func:`check_finite` reading the whole store once.

    Args:
        store: a bound store.

    Raises:
        DamagedBlocksError: naming every damaged done block and how to re-measure it.
    """
    check_chunks(store)
    check_finite(store)
