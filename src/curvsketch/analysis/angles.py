"""Principal angles between subspaces given by orthonormal bases or by masks.

For orthonormal ``A`` (D×p) and ``B`` (D×q) there are ``n = min(p, q)`` principal angles
``0 ≤ θ_1 ≤ … ≤ θ_n ≤ π/2``: ``cos θ_i`` are the singular values of ``AᵀB`` (Björck &
Golub 1973). Cosines near 1 lose all precision in the angle (``arccos(1 − ε)``), so, after
Knyazev & Argentati (2002, SIAM J. Sci. Comput. 23(6)), angles with ``cos² θ ≥ 1/2`` are
taken from the sines instead: the singular values of ``B − A(AᵀB) = (I − AAᵀ)B`` (with
``B`` the basis with fewer columns; with more, the n smallest singular values are the
sines and the rest are 1).

Either side may be a *mask* (1-D LongTensor ``S``, the D×k matrix with columns
``e_{S[j]}``, Fernandez et al., TMLR 2025, §2). No dense D×k matrix is built:
``MᵀA = A[S, :]``, ``(I − MMᵀ)A`` is ``A`` without the rows in ``S``, and two masks have
cosines 1 on shared indices and 0 elsewhere.

Bases may be tensors or factored row-access objects (see :mod:`curvsketch.analysis.rows`);
factored operands are streamed over row blocks, with tall QR (``R ← qr([R; block]).R``)
so that small sines keep their relative accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from curvsketch.analysis.masks import validate_mask
from curvsketch.analysis.rows import (
    BasisLike,
    basis_shape,
    default_block_rows,
    gather_rows,
    leading_columns,
)

__all__ = ["MaskOrBasis", "check_basis", "principal_angles"]

MaskOrBasis = torch.Tensor | BasisLike


@dataclass(frozen=True)
class Operand:
    """A validated argument: ``kind`` is ``"mask"``, ``"dense"`` or ``"factored"``."""

    kind: str
    value: object
    k: int
    D: int | None
    name: str


def classify(X: MaskOrBasis, name: str) -> Operand:
    """Validate one argument and tell masks (1-D integer tensors) from bases."""
    if isinstance(X, torch.Tensor) and X.ndim == 1:
        mask = validate_mask(X, name)
        return Operand("mask", mask, mask.numel(), None, name)
    D, k = basis_shape(X, name)
    if k > D:
        raise ValueError(
            f"'{name}' has more columns (k = {k}) than rows (D = {D}): a D×k orthonormal "
            f"basis needs k ≤ D; pass the basis vectors as columns"
        )
    return Operand("dense" if isinstance(X, torch.Tensor) else "factored", X, k, D, name)


def _block(X: BasisLike, start: int, stop: int) -> torch.Tensor:
    if isinstance(X, torch.Tensor):
        return X[start:stop]
    return gather_rows(X, torch.arange(start, stop))


def _ranges(D: int, ops: list[Operand], block_rows: int | None) -> list[tuple[int, int]]:
    if block_rows is None:
        if all(op.kind == "dense" for op in ops):
            return [(0, D)]
        block_rows = default_block_rows(sum(op.k for op in ops))
    if block_rows < 1:
        raise ValueError(f"'block_rows' must be a positive integer, got {block_rows}")
    return [(s, min(D, s + block_rows)) for s in range(0, D, block_rows)]


def _dtype(ops: list[Operand]) -> torch.dtype:
    dtype = None
    for op in ops:
        if op.kind == "mask":
            continue
        d = getattr(op.value, "dtype", None)
        if not isinstance(d, torch.dtype):
            d = gather_rows(op.value, torch.zeros(1, dtype=torch.long)).dtype
        dtype = d if dtype is None else torch.promote_types(dtype, d)
    return torch.float64 if dtype is None else dtype


def _device(ops: list[Operand]) -> torch.device:
    for op in ops:
        if isinstance(op.value, torch.Tensor) and op.kind == "dense":
            return op.value.device
    return torch.device("cpu")


def tall_svdvals(blocks: Iterator[torch.Tensor]) -> torch.Tensor:
    """Singular values of the row-stack of ``blocks`` (c columns), ascending, length c.

    A single block goes straight to ``svdvals``; several are reduced by streamed tall QR
    (``R ← qr([R; block]).R``), which keeps small singular values accurate to
    ``eps·‖X‖`` as a direct SVD does. With fewer rows than columns the missing singular
    values are zeros.
    """
    first = next(blocks)
    second = next(blocks, None)
    if second is None:
        R = first
    else:
        R = first
        for blk in (second, *blocks):
            stacked = torch.cat([R, blk])
            big = stacked.shape[0] > stacked.shape[1]
            R = torch.linalg.qr(stacked, mode="r").R if big else stacked
    c = R.shape[1]
    vals = torch.linalg.svdvals(R) if R.shape[0] else R.new_zeros(0)
    if vals.numel() < c:
        vals = torch.cat([vals, vals.new_zeros(c - vals.numel())])
    return torch.sort(vals).values


def gram(X: Operand, Y: Operand, block_rows: int | None, dtype: torch.dtype) -> torch.Tensor:
    """``XᵀY`` for two bases (dense or factored), streamed over row blocks."""
    device = _device([X, Y])
    out = None
    for start, stop in _ranges(X.D, [X, Y], block_rows):
        bx = _block(X.value, start, stop).to(device, dtype)
        by = bx if Y is X else _block(Y.value, start, stop).to(device, dtype)
        part = bx.T @ by
        out = part if out is None else out + part
    return out


#: The fix suggested by :func:`check_orthonormal` for the subspace metrics.
_FIX_SPAN = (
    "Pass orthonormalize=True to orthonormalise it by QR (only its span matters), or raise "
    "atol, or pass check=False"
)


def check_orthonormal(
    op: Operand, atol: float | None, block_rows: int | None, fix: str = _FIX_SPAN
) -> None:
    """Raise if ``‖XᵀX − I‖_max > atol`` (Gram in float64; factored: one streamed pass).

    A factored basis with a method ``orthonormality_error(k) -> float | None`` (e.g.
    :class:`curvsketch.sketch.EighResult`, from its factors and cached) is asked for
    ``max |XᵀX − I|`` of its first ``k`` columns instead of being streamed; ``None`` means
    "cannot tell", and the rows are streamed. ``fix`` ends the message.
    """
    if op.kind == "mask":
        return
    dtype = _dtype([op])
    tol = math.sqrt(torch.finfo(dtype).eps) if atol is None else float(atol)
    if not (isinstance(tol, float) and tol >= 0.0):
        raise ValueError(f"'atol' must be a non-negative number, got {atol!r}")
    hook = getattr(op.value, "orthonormality_error", None) if op.kind == "factored" else None
    err = hook(op.k) if callable(hook) else None
    if err is None:
        if basis_shape(op.value, op.name)[1] != op.k:
            op = Operand(op.kind, leading_columns(op.value, op.k), op.k, op.D, op.name)
        G = gram(op, op, block_rows or default_block_rows(op.k), torch.float64)
        err = float((G - torch.eye(op.k, dtype=G.dtype, device=G.device)).abs().max())
    if not float(err) <= tol:
        raise ValueError(
            f"'{op.name}' is not orthonormal: max |{op.name}ᵀ{op.name} − I| = "
            f"{float(err):.3g} > atol = {tol:.3g}. {fix}"
        )


def check_basis(
    U: BasisLike,
    name: str = "U",
    *,
    n_cols: int | None = None,
    atol: float | None = None,
    block_rows: int | None = None,
    fix: str = _FIX_SPAN,
) -> None:
    """Raise ``ValueError`` unless the first ``n_cols`` columns of ``U`` are orthonormal.

    The check of :func:`principal_angles` (``‖UᵀU − I‖_max ≤ atol``, Gram in float64),
    restricted to the columns a metric reads. A dense basis costs one ``D·n²`` product. A
    factored one (``.shape``/``.rows``) that offers ``orthonormality_error(n)`` (as
    :class:`curvsketch.sketch.EighResult` does: ``Vᵀ(QᵀQ)V`` from its factors, ``QᵀQ`` computed
    once per result and cached) is asked, reading no rows; any other is streamed once over
    its rows in blocks of about 64 MiB (never ``D × n`` at once), on its leading ``n``
    columns only. To check a generic factored basis once and reuse it, call this and pass
    ``check=False`` to the metrics.

    Args:
        U: ``(D, o)`` tensor or factored basis.
        name: argument name for the message.
        n_cols: leading columns to check (default all ``o``).
        atol: tolerance (default ``sqrt(eps)`` of the dtype).
        block_rows: rows per streamed block.
        fix: the advice that ends the message.
    """
    D, o = basis_shape(U, name)
    n = o if n_cols is None else int(n_cols)
    if not 1 <= n <= o:
        raise ValueError(f"'n_cols' must be in [1, {o}] (the columns of '{name}'), got {n_cols}")
    if n > D:
        raise ValueError(
            f"'{name}' has {n} columns but only D = {D} rows: at most D columns can be orthonormal"
        )
    hook = getattr(U, "orthonormality_error", None)
    if n < o and not (not isinstance(U, torch.Tensor) and callable(hook)):
        top = getattr(U, "top", None)
        U = top(n) if not isinstance(U, torch.Tensor) and callable(top) else leading_columns(U, n)
    kind = "dense" if isinstance(U, torch.Tensor) else "factored"
    label = name if n == o else f"{name}[:, :{n}]"
    check_orthonormal(Operand(kind, U, n, D, label), atol, block_rows, fix)


class _RightSolved:
    """Factored ``X R⁻¹`` with ``R`` upper triangular: rows are solved on demand."""

    def __init__(self, X: BasisLike, R: torch.Tensor) -> None:
        self._X, self._R = X, R
        self.shape = (int(X.shape[0]), int(X.shape[1]))

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        rows = gather_rows(self._X, index).to(self._R.dtype)
        return torch.linalg.solve_triangular(self._R, rows, upper=True, left=False)


def orthonormalise(op: Operand, block_rows: int | None) -> Operand:
    """Replace a basis by an orthonormal basis of its span (thin QR; factored: tall QR)."""
    if op.kind == "mask":
        return op
    dtype = _dtype([op])
    if op.kind == "dense":
        Q, R = torch.linalg.qr(op.value)
    else:
        blocks = (_block(op.value, s, e).to(dtype) for s, e in _ranges(op.D, [op], block_rows))
        R = next(blocks)
        for blk in blocks:
            R = torch.linalg.qr(torch.cat([R, blk]), mode="r").R
        R = torch.linalg.qr(R, mode="r").R
        Q = None
    d = R.diagonal().abs()
    if float(d.min()) <= float(d.max()) * op.k * torch.finfo(dtype).eps * 10:
        raise ValueError(
            f"'{op.name}' is numerically rank-deficient (|R_ii| from {float(d.min()):.3g} to "
            f"{float(d.max()):.3g}): its columns do not span a {op.k}-dimensional subspace"
        )
    value = Q if Q is not None else _RightSolved(op.value, R)
    return Operand(op.kind, value, op.k, op.D, op.name)


def prepare_pair(
    A: MaskOrBasis,
    B: MaskOrBasis,
    *,
    check: bool,
    orthonormalize: bool,
    atol: float | None,
    block_rows: int | None,
) -> tuple[Operand, Operand]:
    """Classify, cross-validate (D, mask ranges), orthonormalise and check ``A`` and ``B``."""
    a, b = classify(A, "A"), classify(B, "B")
    if a.D is not None and b.D is not None and a.D != b.D:
        raise ValueError(f"'A' and 'B' must have the same number of rows D, got {a.D} and {b.D}")
    D = a.D if a.D is not None else b.D
    if D is not None:
        for op in (a, b):
            if op.kind == "mask":
                validate_mask(op.value, op.name, D)
    ops = []
    for op in (a, b):
        if orthonormalize:
            op = orthonormalise(op, block_rows)
        elif check:
            check_orthonormal(op, atol, block_rows)
        ops.append(op)
    return ops[0], ops[1]


def _mask_mask_angles(a: Operand, b: Operand) -> torch.Tensor:
    n = min(a.k, b.k)
    shared = int(torch.isin(a.value, b.value.to(a.value.device)).sum())
    theta = torch.full((n,), math.pi / 2, dtype=torch.float64)
    theta[:shared] = 0.0
    return theta


def cross_matrix(a: Operand, b: Operand, block_rows: int | None) -> torch.Tensor:
    """``AᵀB`` (up to transposition) for a basis–mask or basis–basis pair.

    For a mask ``S`` this is the gathered rows ``X[S, :]`` (no dense D×k matrix).
    """
    dtype = _dtype([a, b])
    if b.kind == "mask":
        a, b = b, a
    if a.kind == "mask":
        return gather_rows(b.value, a.value).to(dtype)
    return gram(a, b, block_rows, dtype)


def cosines(a: Operand, b: Operand, block_rows: int | None) -> torch.Tensor:
    """Cosines of the principal angles (descending) for a basis–mask or basis–basis pair."""
    return torch.linalg.svdvals(cross_matrix(a, b, block_rows))


def _sines(a: Operand, b: Operand, block_rows: int | None) -> torch.Tensor:
    """The n smallest singular values of the projection of one basis onto the other's
    orthogonal complement: the sines of the principal angles, ascending."""
    n = min(a.k, b.k)
    dtype, device = _dtype([a, b]), _device([a, b])
    if b.kind == "mask":
        a, b = b, a
    if a.kind == "mask":
        # (I − MMᵀ)X: X without the rows in S.
        keep = torch.ones(b.D, dtype=torch.bool)
        keep[a.value.cpu()] = False
        ranges = _ranges(b.D, [b], block_rows)
        blocks = (_block(b.value, s, e).to(device, dtype)[keep[s:e].to(device)] for s, e in ranges)
        return tall_svdvals(blocks)[:n]
    # (I − LLᵀ)S with S the basis with fewer columns: S − L (LᵀS).
    small, large = (a, b) if a.k <= b.k else (b, a)
    M = gram(large, small, block_rows, dtype)
    ranges = _ranges(a.D, [a, b], block_rows)
    blocks = (
        _block(small.value, s, e).to(device, dtype)
        - _block(large.value, s, e).to(device, dtype) @ M
        for s, e in ranges
    )
    return tall_svdvals(blocks)[:n]


def principal_angles(
    A: MaskOrBasis,
    B: MaskOrBasis,
    *,
    check: bool = True,
    orthonormalize: bool = False,
    atol: float | None = None,
    block_rows: int | None = None,
) -> torch.Tensor:
    """Principal angles between ``span(A)`` and ``span(B)``, accurate for small angles.

    Cosines come from the singular values of ``AᵀB`` (Björck & Golub 1973); every angle
    with ``cos² θ ≥ 1/2`` is recomputed from the singular values of ``(I − AAᵀ)B``
    (Knyazev & Argentati 2002), so an angle of 1e-9 keeps its relative accuracy. The
    sine pass is skipped when all angles exceed π/4. Used for the Grassmann metrics of
    Fernandez et al. (TMLR 2025, §2).

    Args:
        A: D×p orthonormal basis (tensor, or object with ``.shape``/``.rows``), or a mask
            (1-D LongTensor of distinct indices into ``range(D)``).
        B: Same forms as ``A``; p and q may differ. For two masks D is not needed.
        check: Verify ``‖XᵀX − I‖_max ≤ atol`` for each basis (for a factored basis this
            reads all rows once).
        orthonormalize: Replace each basis by an orthonormal basis of its span (QR)
            instead of checking it; masks are always orthonormal.
        atol: Orthonormality tolerance; default ``sqrt(eps)`` of the dtype (1.5e-8 for
            float64, 3.5e-4 for float32).
        block_rows: Rows per block when streaming factored bases (default ≈ 64 MiB).

    Returns:
        The ``min(p, q)`` angles in radians, ascending, in ``[0, π/2]``; float64 for two
        masks, else the promoted dtype of the bases.

    Raises:
        ValueError: For mismatched D, k > D, a non-orthonormal basis (fix: pass
            ``orthonormalize=True``), or a mask with duplicate / out-of-range indices.
        TypeError: For arguments that are neither bases nor integer masks.
    """
    a, b = prepare_pair(
        A, B, check=check, orthonormalize=orthonormalize, atol=atol, block_rows=block_rows
    )
    if a.kind == "mask" and b.kind == "mask":
        return _mask_mask_angles(a, b)
    cos = cosines(a, b, block_rows).clamp(0.0, 1.0)
    theta = torch.arccos(cos)
    small = cos.square() >= 0.5
    if bool(small.any()):
        sin = _sines(a, b, block_rows).clamp(0.0, 1.0)
        theta = torch.where(small, torch.arcsin(sin), theta)
    return torch.sort(theta).values
