"""The measurement-store interface shared by the in-memory and the Zarr stores.

Layout of a single-pass sketch (Fernandez et al., TMLR 2025, §3, Alg. 2, after Tropp,
Yurtsever, Udell, Cevher 2019): product ``i < s`` is ``y_i = H ψ_i``; the store keeps the
outer sketch ``Y = [y_0 … y_{o−1}]`` (``D × o``) and the inner sketch ``Z = Φ [y_0 …
y_{s−1}]`` (``s × s``). Products are grouped in blocks ``[b·B, min((b+1)·B, s))``; block
``b`` owns columns ``[b·B, min((b+1)·B, o))`` of ``Y`` (possibly none) and the same
columns of ``Z``. A block is *committed* atomically: its data first, then its "done" mark,
so after a crash a block is complete or absent, never half counted. A done block whose
data were damaged afterwards is found by :func:`curvsketch.store.integrity.check_blocks`
and measured again after :meth:`MeasurementStore.unmark_blocks`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from curvsketch.store.identity import RunIdentity

__all__ = ["MeasurementStore", "numpy_dtype"]

_DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16}


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a measurement dtype name (``"float64"``, ...)."""
    if name not in _DTYPES:
        raise ValueError(
            f"measurement dtype {name!r} cannot be stored; use one of {sorted(_DTYPES)} "
            "(e.g. build the operator in float32)"
        )
    return np.dtype(_DTYPES[name])


class MeasurementStore(ABC):
    """Blocks of single-pass measurements of one run, committed one block at a time.

    Call :meth:`bind` with the run's :class:`RunIdentity` before anything else: a new store
    records it, an existing one refuses a different one (:class:`StoreMismatchError`).
    """

    def __init__(self) -> None:
        self._identity: RunIdentity | None = None

    @property
    def identity(self) -> RunIdentity:
        """The bound run identity."""
        if self._identity is None:
            raise RuntimeError(f"{self!r} is not bound to a run yet: call bind(identity) first")
        return self._identity

    @abstractmethod
    def bind(self, identity: RunIdentity) -> None:
        """Create the store for ``identity``, or check that it already holds that run."""

    def peek_identity(self) -> RunIdentity | None:
        """The identity the store already holds (without binding), or ``None`` if none."""
        return self._identity

    def check_compatible(self, identity: RunIdentity) -> None:
        """Refuse ``identity`` early if the store holds another run, comparing every field
        but the probe digest (which needs a product; :meth:`bind` compares it).

        Raises:
            StoreMismatchError: a field differs (all differing fields are named).
        """
        stored = self.peek_identity()
        if stored is not None:
            identity.check_matches(stored, self.location, probe=False)

    @abstractmethod
    def done_blocks(self) -> set[int]:
        """Indices of the committed blocks (empty for a store not created yet)."""

    @abstractmethod
    def _unmark(self, block: int) -> None:
        """Remove the done mark of ``block`` (no error if it has none)."""

    def unmark_blocks(self, blocks: Any) -> None:
        """Mark ``blocks`` not done, so that the next ``measure`` measures them again.

        Args:
            blocks: block indices (e.g. :attr:`DamagedBlocksError.blocks
                <curvsketch.store.integrity.DamagedBlocksError.blocks>`).
        """
        for b in sorted({int(b) for b in blocks}):
            self.identity.block_range(b)  # IndexError names the valid range
            self._unmark(b)

    def unmark_hint(self, blocks: list[int]) -> str:
        """How a user marks ``blocks`` not done, for error messages."""
        return f"call store.unmark_blocks({blocks}) on this store"

    def chunk_problems(self, blocks: Any) -> dict[int, list[str]]:
        """Done blocks whose stored chunks are missing or of the wrong size (none in memory)."""
        return {}

    @abstractmethod
    def _write(self, block: int, y: np.ndarray | None, z: np.ndarray) -> None:
        """Write the data of ``block`` (not yet marked done)."""

    @abstractmethod
    def _mark_done(self, block: int) -> None:
        """Mark ``block`` committed (the last, atomic step)."""

    @abstractmethod
    def read_y(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` of the outer sketch ``Y`` (all ``o`` columns)."""

    @abstractmethod
    def read_z(self) -> np.ndarray:
        """The inner sketch ``Z`` (``s × s``)."""

    @property
    def location(self) -> str:
        """Where the store lives, for messages."""
        return repr(self)

    def y_columns(self, block: int) -> tuple[int, int]:
        """Columns ``[c0, c1)`` of ``Y`` owned by ``block`` (``c0 == c1`` when none)."""
        i0, i1 = self.identity.block_range(block)
        o = self.identity.outer
        return min(i0, o), min(i1, o)

    def missing_blocks(self) -> list[int]:
        """Blocks not committed yet, in order."""
        done = self.done_blocks()
        return [b for b in range(self.identity.num_blocks) if b not in done]

    def is_complete(self) -> bool:
        """Whether every block is committed."""
        return not self.missing_blocks()

    def commit_block(self, block: int, products: Any, inner: Any) -> None:
        """Write block ``block`` and mark it done.

        Args:
            block: block index.
            products: ``(D, i1 − i0)`` products ``H ψ_i`` of the block (tensor or array);
                only the columns that belong to ``Y`` are kept.
            inner: ``(s, i1 − i0)`` columns ``Φ y_i`` of ``Z``.
        """
        ident = self.identity
        i0, i1 = ident.block_range(block)
        c0, c1 = self.y_columns(block)
        dt = numpy_dtype(ident.dtype)
        z = _as_numpy(inner, dt)
        if z.shape != (ident.inner, i1 - i0):
            raise ValueError(
                f"commit_block({block}): inner sketch columns have shape {z.shape}, expected "
                f"{(ident.inner, i1 - i0)}"
            )
        y = None
        if c1 > c0:
            y = _as_numpy(products, dt)
            if y.shape[0] != ident.dim or y.shape[1] < c1 - c0:
                raise ValueError(
                    f"commit_block({block}): products have shape {y.shape}, expected "
                    f"({ident.dim}, >= {c1 - c0})"
                )
            y = y[:, : c1 - c0]
        self._write(block, y, z)
        self._mark_done(block)


def _as_numpy(x: Any, dtype: np.dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)
