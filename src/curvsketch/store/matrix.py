"""A read-only, tensor-like view of a 2-D Zarr array on disk.

Results of an out-of-core recovery keep their ``D × k`` basis on disk. :class:`ZarrMatrix`
offers what :class:`curvsketch.sketch.EighResult` and the analysis layer need from a basis
(``shape``, ``ndim``, ``dtype``, ``device``, row indexing, column slicing, ``@`` in row
blocks) and reads only the chunks it touches. Row indices are sorted before reading and the
rows returned in the order asked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import zarr

__all__ = ["ZarrMatrix"]

#: Rows per read when multiplying the whole matrix.
ROW_BLOCK = 65536


class ZarrMatrix:
    """Tensor-like, read-only view of a 2-D Zarr array (optionally a column range).

    Args:
        array: the 2-D Zarr array.
        columns: optional ``slice`` of columns (unit step) this view covers.
    """

    def __init__(self, array: zarr.Array, columns: slice | None = None) -> None:
        if len(array.shape) != 2:
            raise ValueError(f"ZarrMatrix needs a 2-D array, got shape {array.shape}")
        self.array = array
        c0, c1, step = (columns or slice(None)).indices(array.shape[1])
        if step != 1:
            raise ValueError("ZarrMatrix: column slices must have step 1")
        self._cols = (c0, max(c0, c1))

    @property
    def shape(self) -> torch.Size:
        """``(rows, columns)``."""
        return torch.Size((int(self.array.shape[0]), self._cols[1] - self._cols[0]))

    @property
    def ndim(self) -> int:
        """Always 2."""
        return 2

    @property
    def dtype(self) -> torch.dtype:
        """torch dtype of the entries."""
        return torch.from_numpy(np.empty(0, dtype=self.array.dtype)).dtype

    @property
    def device(self) -> torch.device:
        """Always the CPU (reads come from disk)."""
        return torch.device("cpu")

    def _read(self, rows: Any) -> np.ndarray:
        c0, c1 = self._cols
        if isinstance(rows, slice):
            return np.asarray(self.array[rows, c0:c1])
        idx = np.asarray(torch.as_tensor(rows).cpu().numpy(), dtype=np.int64).reshape(-1)
        n = self.array.shape[0]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"ZarrMatrix: row index out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        order = np.argsort(idx, kind="stable")
        uniq, inverse = np.unique(idx[order], return_inverse=True)
        block = np.asarray(self.array.get_orthogonal_selection((uniq, slice(c0, c1))))
        out = np.empty((idx.size, c1 - c0), dtype=block.dtype)
        out[order] = block[inverse]
        return out

    def __getitem__(self, key: Any) -> Any:
        """``m[rows]`` or ``m[rows, cols]``: a tensor, except ``m[:, a:b]`` (a view)."""
        if isinstance(key, tuple):
            if len(key) != 2:
                raise IndexError("ZarrMatrix: at most two indices")
            rows, cols = key
            if (
                isinstance(rows, slice)
                and rows == slice(None)
                and isinstance(cols, slice)
                and cols.step in (None, 1)
            ):
                c0, c1, _ = cols.indices(self.shape[1])
                return ZarrMatrix(self.array, slice(self._cols[0] + c0, self._cols[0] + c1))
            return torch.from_numpy(self._read(rows))[:, cols]
        return torch.from_numpy(self._read(key))

    def to_tensor(self) -> torch.Tensor:
        """The whole matrix in memory."""
        return torch.from_numpy(self._read(slice(None)))

    def __matmul__(self, other: torch.Tensor) -> torch.Tensor:
        """``self @ other`` computed :data:`ROW_BLOCK` rows at a time."""
        n = self.shape[0]
        out = torch.empty((n, *other.shape[1:]), dtype=other.dtype)
        for r0 in range(0, n, ROW_BLOCK):
            r1 = min(n, r0 + ROW_BLOCK)
            out[r0:r1] = torch.from_numpy(self._read(slice(r0, r1))).to(other.dtype) @ other
        return out

    def __repr__(self) -> str:
        return (
            f"ZarrMatrix(shape={tuple(self.shape)}, dtype={self.dtype}, store={self.array.store})"
        )
