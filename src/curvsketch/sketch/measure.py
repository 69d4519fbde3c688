"""The measurement phase: operator products on blocks of test vectors, checked as they come.

Measurements are the expensive part of a sketch (one Hessian-vector product each) and the
only part that touches the operator. They are computed block by block, each block fully
identified by the test operator (``kind, seed, stream``) and an index range
``[start, stop)``, so a store layer can compute any block on any worker, in any order,
commit it, and resume after a crash; the recoveries (:mod:`.recovery`) then only need the
assembled sketches. Every block is checked for non-finite values right after it is
measured, and the error names the block. :func:`measure_singlepass` and
:func:`measure_outer` fill the in-memory sketches of :func:`curvsketch.sketch.seigh` block
by block.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.noise import NoiseOperator

__all__ = [
    "NonFiniteMeasurementError",
    "adjoint_product",
    "apply_in_blocks",
    "block_ranges",
    "check_finite",
    "column_major",
    "has_adjoint",
    "measure_block",
    "measure_outer",
    "measure_singlepass",
]


class NonFiniteMeasurementError(ValueError):
    """A block of measurements contains NaN or Inf.

    Attributes:
        start: first index of the block.
        stop: one past its last index.
        what: which measurements (e.g. ``"H @ psi"``).
    """

    def __init__(self, what: str, start: int, stop: int, bad: int) -> None:
        self.what, self.start, self.stop = what, start, stop
        super().__init__(
            f"non-finite values in measurements {what} for indices [{start}, {stop}) "
            f"({bad} entries are NaN/Inf): check the operator (e.g. a diverged model or a "
            "loss that overflows in this dtype); the blocks before this one are valid"
        )


def check_finite(x: torch.Tensor, what: str, start: int, stop: int) -> torch.Tensor:
    """Raise :class:`NonFiniteMeasurementError` if ``x`` has a NaN or Inf; return ``x``."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        raise NonFiniteMeasurementError(what, start, stop, int((~finite).sum()))
    return x


def block_ranges(start: int, stop: int, block_size: int) -> Iterator[tuple[int, int]]:
    """Yield ``(i0, i1)`` covering ``[start, stop)`` in steps of ``block_size``."""
    for i0 in range(start, stop, block_size):
        yield i0, min(i0 + block_size, stop)


def has_adjoint(op: Any) -> bool:
    """Whether ``op`` offers an adjoint product (``op.rmatmul`` or ``op.T``)."""
    return callable(getattr(op, "rmatmul", None)) or getattr(op, "T", None) is not None


def adjoint_product(op: Any, x: torch.Tensor) -> torch.Tensor:
    """Return ``opᵀ @ x`` using ``op.rmatmul`` if present, else ``op.T @ x``.

    Raises:
        TypeError: the operator offers neither.
    """
    if callable(getattr(op, "rmatmul", None)):
        return op.rmatmul(x)
    if getattr(op, "T", None) is not None:
        return op.T @ x
    raise TypeError(
        f"{type(op).__name__} has no adjoint product: ssvd needs op.rmatmul(x) or op.T @ x; "
        "wrap it in a curvsketch.operators.LinearOperator that implements _rmatmat"
    )


def _product(op: Any, x: torch.Tensor, adjoint: bool, rows: int) -> torch.Tensor:
    out = adjoint_product(op, x) if adjoint else op @ x
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (rows, x.shape[1]):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{type(op).__name__} returned {got} for a ({x.shape[0]}, {x.shape[1]}) block; "
            f"expected ({rows}, {x.shape[1]}): the operator must map (N, m) blocks to (M, m)"
        )
    return out


def measure_block(
    op: Any,
    test: NoiseOperator,
    start: int,
    stop: int,
    *,
    inner: NoiseOperator | None = None,
    adjoint: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    block_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Measure one block of test vectors: ``Y = op @ Ω[start:stop]ᵀ`` and ``Φ Y``.

    This is the unit of work of every sketch in this package (Tropp, Yurtsever, Udell,
    Cevher 2019: the sketches are linear in the operator, so blocks of test vectors can be
    measured independently and in any order).

    Args:
        op: the operator (``.shape``, ``.dtype``, ``.device``, ``@``).
        test: test operator whose rows ``start..stop-1`` are multiplied by ``op``.
        start: first test-vector index.
        stop: one past the last.
        inner: optional second test operator ``Φ`` applied to the products (the inner
            sketch ``Z[:, start:stop] = Φ op Ω[start:stop]ᵀ`` of a single-pass sketch).
        adjoint: multiply by ``opᵀ`` instead of ``op`` (the co-range sketch of SSVD).
        dtype: dtype of the test vectors (default ``op.dtype``).
        device: device of the test vectors (default ``op.device``).
        block_size: columns per batched transform when applying ``inner``.

    Returns:
        ``(Y, Z)``: ``Y`` of shape ``(M, stop - start)`` and ``Z = inner @ Y`` of shape
        ``(inner.num_rows, stop - start)``, or ``None`` without ``inner``.

    Raises:
        NonFiniteMeasurementError: ``Y`` contains NaN or Inf (names ``[start, stop)``).
    """
    dtype = op.dtype if dtype is None else dtype
    device = op.device if device is None else device
    vectors = test.columns(start, stop, dtype=dtype, device=device)
    rows = op.shape[1] if adjoint else op.shape[0]
    what = f"{'opT' if adjoint else 'op'} @ {test.stream}"
    y = check_finite(_product(op, vectors, adjoint, rows), what, start, stop)
    z = inner.matmul(y, block_size=block_size) if inner is not None else None
    return y, z


def column_major(
    shape: tuple[int, int], *, dtype: torch.dtype, device: torch.device | str
) -> torch.Tensor:
    """An empty ``(D, m)`` matrix stored column by column (Fortran order).

    Sketches are filled a block of columns at a time and then factored by LAPACK, which
    works on column-major storage: a row-major ``D × o`` matrix would be copied whole
    (``D·o`` more memory) before the QR, and each column block written with a stride.
    """
    return torch.empty((shape[1], shape[0]), dtype=dtype, device=device).T


def apply_in_blocks(
    op: Any,
    x: torch.Tensor,
    block_size: int,
    *,
    what: str = "op @ Q",
    on_block: Any = None,
) -> torch.Tensor:
    """Return ``op @ x`` computed ``block_size`` columns at a time, each block checked.

    Used where the vectors are data-dependent (power iterations, ``QᵀHQ``) rather than
    test vectors.

    Args:
        op: the operator.
        x: block ``(N, m)``.
        block_size: columns per product.
        what: label for error messages.
        on_block: optional callback ``on_block(num_columns)`` after each block (progress).

    Returns:
        ``(M, m)`` tensor.
    """
    m = x.shape[1]
    out = column_major((op.shape[0], m), dtype=x.dtype, device=x.device)
    for i0, i1 in block_ranges(0, m, block_size):
        out[:, i0:i1] = check_finite(_product(op, x[:, i0:i1], False, op.shape[0]), what, i0, i1)
        if on_block is not None:
            on_block(i1 - i0)
    return out


def measure_singlepass(
    op: Any,
    psi: NoiseOperator,
    phi: NoiseOperator,
    outer: int,
    *,
    block_size: int,
    dtype: torch.dtype,
    device: torch.device,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Measure the single-pass sketches ``Y = H Ψ[:outer]ᵀ`` and ``Z = Φ H Ψᵀ`` in memory.

    One product per row of ``Ψ`` (``s = psi.num_rows``), in blocks of ``block_size``; the
    first ``outer`` products are kept whole as ``Y`` (Fernandez et al., TMLR 2025, §3,
    Alg. 2).

    Returns:
        ``(Y, Z)`` of shapes ``(D, outer)`` and ``(phi.num_rows, s)``.
    """
    dim, s = op.shape[0], psi.num_rows
    y_all = column_major((dim, outer), dtype=dtype, device=device)
    z_all = torch.empty((phi.num_rows, s), dtype=dtype, device=device)
    for i0, i1 in block_ranges(0, s, block_size):
        y, z = measure_block(op, psi, i0, i1, inner=phi, dtype=dtype, device=device)
        assert z is not None
        z_all[:, i0:i1] = z
        if i0 < outer:
            y_all[:, i0 : min(i1, outer)] = y[:, : min(i1, outer) - i0]
        if progress is not None:
            progress.update(i1 - i0)
    return y_all, z_all


def measure_outer(
    op: Any,
    omega: NoiseOperator,
    outer: int,
    *,
    block_size: int,
    dtype: torch.dtype,
    device: torch.device,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Measure the outer sketch ``Y = H Ω[:outer]ᵀ`` in memory, in blocks.

    Returns:
        ``Y`` of shape ``(D, outer)``.
    """
    y_all = column_major((op.shape[0], outer), dtype=dtype, device=device)
    for i0, i1 in block_ranges(0, outer, block_size):
        y_all[:, i0:i1] = measure_block(op, omega, i0, i1, dtype=dtype, device=device)[0]
        if progress is not None:
            progress.update(i1 - i0)
    return y_all
