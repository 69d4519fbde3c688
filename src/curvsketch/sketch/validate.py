"""Argument checks shared by the sketches: each error names the argument and the fix."""

from __future__ import annotations

from typing import Any

import torch

from curvsketch.operators.protocol import as_operator
from curvsketch.sketch.noise import NOISE_KINDS

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "check_block_size",
    "check_count",
    "check_inner",
    "check_noise",
    "check_operator",
    "check_outer",
    "check_seed",
    "resolve_dtype_device",
]

#: Default number of test vectors multiplied by the operator at once.
DEFAULT_BLOCK_SIZE = 64
_FLOATS = (torch.float32, torch.float64)


def check_count(name: str, value: Any, minimum: int, meaning: str) -> int:
    """Return ``value`` if it is an ``int >= minimum``, else raise a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer ({meaning}), got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum} ({meaning}), got {value}")
    return value


def check_outer(outer: Any, limit: int, limit_name: str, symbol: str, what: str) -> int:
    """Return the outer sketch size ``outer`` if it is an integer in ``[1, limit]``.

    Args:
        outer: the number of pairs (or triplets) to sketch.
        limit: the most there are: ``D`` for :func:`~curvsketch.sketch.make_plan`,
            ``min(M, N)`` for :func:`~curvsketch.sketch.ssvd`.
        limit_name: how messages name ``limit`` (e.g. ``"the operator's dimension D"``).
        symbol: its symbol in messages (``"D"``, ``"min(M, N)"``).
        what: what ``outer`` counts, for messages (e.g. ``"eigenpairs"``).

    Raises:
        ValueError: not an integer, below 1 or above ``limit``.
    """
    outer = check_count("outer", outer, 1, f"the number of {what} to sketch")
    if outer > limit:
        raise ValueError(
            f"outer={outer} exceeds {limit_name}={limit}; at most {symbol} {what} exist: use "
            f"outer <= {limit}"
        )
    return outer


def check_inner(inner: Any, outer: int, limit: int, limit_name: str, symbol: str) -> int:
    """The inner (core) sketch size ``s`` of a sketch with a core solve.

    ``None`` gives the paper's ``min(2·outer, limit)``; otherwise ``inner`` must be an
    integer in ``[outer, limit]`` (the core solve needs ``ΨQ`` of full column rank). Used
    by :func:`~curvsketch.sketch.make_plan` (``limit = D``) and
    :func:`~curvsketch.sketch.ssvd` (``limit = min(M, N)``).

    Args:
        inner: the requested size, or ``None``.
        outer: the checked outer sketch size.
        limit: the largest size possible.
        limit_name: how messages name ``limit``.
        symbol: its symbol in messages.

    Raises:
        ValueError: not an integer, below ``outer`` or above ``limit``.
    """
    if inner is None:
        return min(2 * outer, limit)
    inner = check_count("inner", inner, 1, "the inner sketch size s; the paper uses 2*outer")
    if inner < outer:
        raise ValueError(
            f"inner={inner} must be >= outer={outer} (the core solve needs ΨQ of full "
            f"column rank); the paper uses inner = 2*outer = {2 * outer}"
        )
    if inner > limit:
        raise ValueError(
            f"inner={inner} exceeds {limit_name}={limit}; cap it: inner=min(inner, {symbol}) "
            f"= {limit}"
        )
    return inner


def check_seed(seed: Any) -> int:
    """Return ``seed`` if it is an integer."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return seed


def check_noise(noise: Any) -> str:
    """Return ``noise`` if it names a test operator."""
    if noise not in NOISE_KINDS:
        raise ValueError(
            f"noise={noise!r} is not a test operator; use one of {', '.join(NOISE_KINDS)}"
        )
    return str(noise)


def check_block_size(block_size: Any, needed: int) -> int:
    """Resolve ``block_size`` (``None`` → ``min(DEFAULT_BLOCK_SIZE, needed)``)."""
    if block_size is None:
        return max(1, min(DEFAULT_BLOCK_SIZE, needed))
    return check_count("block_size", block_size, 1, "test vectors per operator product")


def check_operator(op: Any, who: str) -> Any:
    """Return ``op`` as an operator (:func:`as_operator`) with a 2-D shape."""
    try:
        op = as_operator(op)
    except TypeError as err:
        raise TypeError(f"{who}: op {err}") from None
    if op.dtype not in _FLOATS:
        raise ValueError(
            f"{who}: op.dtype is {op.dtype}; sketches run in float32 or float64: convert the "
            "operator (e.g. a tensor with .double())"
        )
    return op


def _same_device(requested: torch.device, actual: torch.device) -> bool:
    if requested.type != actual.type:
        return False
    return requested.index is None or actual.index is None or requested.index == actual.index


def resolve_dtype_device(
    op: Any, dtype: torch.dtype | None, device: torch.device | str | None, who: str
) -> tuple[torch.dtype, torch.device]:
    """Check a requested dtype/device against the operator's and return the ones to use.

    The test vectors must be in the operator's dtype and on its device; ``None`` means
    "the operator's".
    """
    op_device = torch.device(op.device)
    if dtype is not None and dtype != op.dtype:
        raise ValueError(
            f"{who}: dtype={dtype} but op.dtype is {op.dtype}; pass dtype=None (use the "
            f"operator's) or build the operator in {dtype}"
        )
    if device is not None:
        requested = torch.device(device)
        if not _same_device(requested, op_device):
            raise ValueError(
                f"{who}: device={requested} but the operator computes on {op_device}; pass "
                f"device=None (use the operator's) or move the operator to {requested}"
            )
    return op.dtype, op_device
