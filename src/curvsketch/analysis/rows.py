"""Row access to eigenvector bases that may be dense, factored, or stored on disk.

The analysis layer only ever needs *rows* of an eigenvector matrix ``U`` (D×o): a mask
``S`` meets ``U`` through ``U[S, :]`` (Fernandez et al., TMLR 2025, §2), and the few
quantities that need every row (row norms, ``diag(H²)``, the "best" mask) stream over
blocks of rows. So a basis is accepted, by duck typing, as either

* a ``torch.Tensor`` of shape ``(D, o)``, or
* any object with ``.shape == (D, o)`` and a method ``.rows(index) -> torch.Tensor``
  that returns ``U[index, :]`` (shape ``(len(index), o)``) without materialising the
  D×o matrix, e.g. a sketched eigendecomposition whose eigenvectors are ``Q @ V`` with
  ``Q`` a chunked on-disk array (the :class:`RowAccess` protocol).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypeAlias, runtime_checkable

import torch

__all__ = [
    "BasisLike",
    "RowAccess",
    "basis_shape",
    "default_block_rows",
    "gather_rows",
    "iter_row_blocks",
    "leading_columns",
    "row_norms_sq",
    "weighted_row_norms_sq",
]

#: Target size in bytes of one block of rows read while streaming over ``U``.
BLOCK_BYTES = 64 * 2**20


@runtime_checkable
class RowAccess(Protocol):
    """A D×o matrix that can hand out blocks of its rows without being materialised."""

    @property
    def shape(self) -> tuple[int, ...]:
        """``(D, o)``."""
        ...

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Return ``U[index, :]`` of shape ``(len(index), o)`` for a 1-D LongTensor index."""
        ...


BasisLike: TypeAlias = torch.Tensor | RowAccess


def _is_factored(U: object) -> bool:
    return (
        not isinstance(U, torch.Tensor)
        and hasattr(U, "shape")
        and callable(getattr(U, "rows", None))
    )


def basis_shape(U: BasisLike, name: str = "U") -> tuple[int, int]:
    """Return ``(D, o)`` of a dense or factored basis, validating its type and shape.

    Args:
        U: A ``(D, o)`` floating tensor or an object with ``.shape`` and ``.rows``.
        name: Argument name used in error messages.

    Returns:
        The pair ``(D, o)`` as Python ints.

    Raises:
        TypeError: If ``U`` is neither a tensor nor a row-access object.
        ValueError: If ``U`` is not two-dimensional or has an empty dimension.
    """
    if isinstance(U, torch.Tensor):
        if U.ndim != 2:
            raise ValueError(
                f"'{name}' must be a 2-D (D, o) tensor of basis vectors in its columns, "
                f"got shape {tuple(U.shape)}"
            )
        if not U.is_floating_point():
            raise TypeError(
                f"'{name}' must be a real floating-point tensor, got dtype {U.dtype}; "
                f"convert it with {name}.to(torch.float64)"
            )
        shape = tuple(U.shape)
    elif _is_factored(U):
        shape = tuple(int(s) for s in U.shape)
        if len(shape) != 2:
            raise ValueError(f"'{name}'.shape must be (D, o), got {shape}")
    else:
        raise TypeError(
            f"'{name}' must be a (D, o) torch.Tensor or an object with .shape == (D, o) and "
            f".rows(index) returning U[index, :]; got {type(U).__name__}"
        )
    D, o = int(shape[0]), int(shape[1])
    if D < 1 or o < 1:
        raise ValueError(f"'{name}' must have at least one row and one column, got {shape}")
    return D, o


def _check_index(index: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(index, torch.Tensor) or index.ndim != 1:
        raise ValueError(f"'{name}' must be a 1-D integer tensor of row indices")
    if index.dtype == torch.bool or index.is_floating_point() or index.is_complex():
        raise TypeError(
            f"'{name}' must have an integer dtype, got {index.dtype}; for a boolean mask "
            f"pass mask.nonzero().squeeze(1)"
        )
    return index.to(torch.long)


def gather_rows(U: BasisLike, index: torch.Tensor) -> torch.Tensor:
    """Return the rows ``U[index, :]`` of a dense or factored basis.

    For a tensor this is ``U.index_select(0, index)``; for a factored basis it calls
    ``U.rows(index)``, which reads only the requested rows (the D×o matrix is never
    materialised).

    Args:
        U: A ``(D, o)`` tensor or an object with ``.shape`` and ``.rows``.
        index: 1-D integer tensor of row indices in ``range(D)``, any order, repeats allowed.

    Returns:
        Tensor of shape ``(len(index), o)``, rows in the order of ``index``.

    Raises:
        ValueError: If ``index`` is out of range or ``U.rows`` returns the wrong shape.
    """
    D, o = basis_shape(U)
    index = _check_index(index, "index")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= D):
        raise ValueError(
            f"'index' must lie in range(D) = range({D}), got values in "
            f"[{int(index.min())}, {int(index.max())}]"
        )
    if isinstance(U, torch.Tensor):
        return U.index_select(0, index.to(U.device))
    out = U.rows(index)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (index.numel(), o):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"U.rows(index) must return a tensor of shape (len(index), o) = "
            f"({index.numel()}, {o}), got {got}"
        )
    return out


def default_block_rows(n_cols: int, itemsize: int = 8) -> int:
    """Number of rows per streamed block so that one block is about 64 MiB."""
    return max(1, BLOCK_BYTES // max(1, n_cols * itemsize))


def iter_row_blocks(
    U: BasisLike, block_rows: int | None = None, n_cols: int | None = None
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, U[start:start + b, :n_cols])`` over consecutive blocks of rows.

    Memory is bounded by one block; a factored basis is asked for contiguous, sorted
    index ranges (sequential reads for on-disk arrays).

    Args:
        U: A ``(D, o)`` tensor or an object with ``.shape`` and ``.rows``.
        block_rows: Rows per block; default about 64 MiB per block.
        n_cols: Keep only the first ``n_cols`` columns (default: all).

    Yields:
        Pairs of the first row index of the block and the block itself.
    """
    D, o = basis_shape(U)
    n_cols = o if n_cols is None else n_cols
    if not 1 <= n_cols <= o:
        raise ValueError(f"'n_cols' must be in [1, {o}] (the columns of U), got {n_cols}")
    if block_rows is None:
        block_rows = default_block_rows(o)
    if block_rows < 1:
        raise ValueError(f"'block_rows' must be a positive integer, got {block_rows}")
    for start in range(0, D, block_rows):
        stop = min(D, start + block_rows)
        if isinstance(U, torch.Tensor):
            block = U[start:stop]
        else:
            block = gather_rows(U, torch.arange(start, stop))
        yield start, block[:, :n_cols]


def weighted_row_norms_sq(
    U: BasisLike, weights: torch.Tensor | None = None, *, block_rows: int | None = None
) -> torch.Tensor:
    """Return ``r_i = Σ_j w_j U_ij²`` for every row ``i``, streaming over row blocks.

    With ``weights=None`` all weights are one and ``r`` is the squared row norm. The sum
    runs over the first ``len(weights)`` columns of ``U``.

    Args:
        U: A ``(D, o)`` tensor or an object with ``.shape`` and ``.rows``.
        weights: Optional 1-D tensor of length ``m ≤ o``.
        block_rows: Rows per block (default: about 64 MiB per block).

    Returns:
        Float64 tensor of length D.
    """
    D, o = basis_shape(U)
    n_cols = o
    if weights is not None:
        if not isinstance(weights, torch.Tensor) or weights.ndim != 1:
            raise ValueError("'weights' must be a 1-D tensor")
        n_cols = weights.numel()
        if not 1 <= n_cols <= o:
            raise ValueError(
                f"'weights' has length {n_cols} but U has {o} columns: need 1 ≤ len ≤ {o}"
            )
        weights = weights.to(torch.float64)
    out = torch.empty(D, dtype=torch.float64)
    for start, block in iter_row_blocks(U, block_rows, n_cols):
        sq = block.to(torch.float64).square()
        vals = sq.sum(1) if weights is None else sq @ weights.to(sq.device)
        out[start : start + block.shape[0]] = vals.cpu()
    return out


def row_norms_sq(
    U: BasisLike, n_cols: int | None = None, *, block_rows: int | None = None
) -> torch.Tensor:
    """Return the squared norms of the rows of ``U[:, :n_cols]``, streaming over row blocks.

    Args:
        U: A ``(D, o)`` tensor or an object with ``.shape`` and ``.rows``.
        n_cols: Number of leading columns to include (default: all ``o``).
        block_rows: Rows per block (default: about 64 MiB per block).

    Returns:
        Float64 tensor of length D.
    """
    _, o = basis_shape(U)
    n_cols = o if n_cols is None else n_cols
    if not 1 <= n_cols <= o:
        raise ValueError(f"'n_cols' must be in [1, {o}] (the columns of U), got {n_cols}")
    return weighted_row_norms_sq(U, torch.ones(n_cols, dtype=torch.float64), block_rows=block_rows)


class _LeadingColumns:
    """A factored basis restricted to its first ``k`` columns (still factored)."""

    def __init__(self, U: RowAccess, k: int) -> None:
        self._U = U
        self.shape = (int(U.shape[0]), k)

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        return self._U.rows(index)[:, : self.shape[1]]


def leading_columns(U: BasisLike, k: int, name: str = "U") -> BasisLike:
    """Return ``U[:, :k]`` for a dense basis, or a factored view of it for a factored one.

    Args:
        U: A ``(D, o)`` tensor or an object with ``.shape`` and ``.rows``.
        k: Number of leading columns, ``1 ≤ k ≤ o``.
        name: Argument name used in error messages.

    Returns:
        A ``(D, k)`` tensor or row-access object.
    """
    _, o = basis_shape(U, name)
    if not 1 <= k <= o:
        raise ValueError(f"'k' must be in [1, {o}] (the columns of '{name}'), got {k}")
    if isinstance(U, torch.Tensor):
        return U[:, :k]
    return _LeadingColumns(U, k)
