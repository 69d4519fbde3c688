"""Exact dense references: the full ``D × D`` matrix of an operator, for small ``D``.

Built from block products with identity columns, so the reference exercises the same
product code it is used to check. Refuses above a size limit unless forced: a
``D × D`` float64 matrix needs ``8·D²`` bytes (0.4 GB at D = 7,030).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from curvsketch.operators.curvature import GGNOperator, HessianOperator
from curvsketch.operators.protocol import Operator

__all__ = ["dense_ggn", "dense_hessian", "dense_matrix"]

DEFAULT_MAX_DIM = 20_000


def dense_matrix(
    op: Operator, *, block_size: int = 256, max_dim: int = DEFAULT_MAX_DIM, force: bool = False
) -> torch.Tensor:
    """Materialise a square operator as a dense matrix, ``block_size`` columns at a time.

    Args:
        op: a ``(D, D)`` operator.
        block_size: identity columns per product.
        max_dim: refuse if ``D`` exceeds this, unless ``force``.
        force: build even above ``max_dim``.

    Returns:
        The ``(D, D)`` matrix, on the operator's device and dtype.

    Raises:
        ValueError: non-square operator, or ``D > max_dim`` without ``force``.
    """
    m, n = op.shape
    if m != n:
        raise ValueError(f"dense_matrix: operator must be square, got shape {op.shape}")
    if n > max_dim and not force:
        gb = n * n * torch.finfo(op.dtype).bits / 8 / 1e9
        raise ValueError(
            f"dense_matrix: D = {n} exceeds max_dim = {max_dim} ({gb:.1f} GB for the matrix); "
            "use a sketch (curvsketch.seigh) or pass force=True"
        )
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    out = torch.empty(n, n, dtype=op.dtype, device=op.device)
    for i in range(0, n, block_size):
        j = min(i + block_size, n)
        eye = torch.zeros(n, j - i, dtype=op.dtype, device=op.device)
        eye[torch.arange(i, j), torch.arange(j - i)] = 1
        out[:, i:j] = op @ eye
    return out


def dense_hessian(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    data: Any,
    *,
    params: Iterable[torch.Tensor] | None = None,
    block_size: int = 256,
    max_dim: int = DEFAULT_MAX_DIM,
    force: bool = False,
    symmetrize: bool = True,
    **operator_kwargs: Any,
) -> torch.Tensor:
    """The exact Hessian of the mean loss as a dense ``(D, D)`` matrix (small ``D`` only).

    Args:
        model, loss_fn, data, params: as for :class:`~curvsketch.HessianOperator`.
        block_size: columns per block product.
        max_dim: refuse above this many parameters unless ``force``.
        force: build even above ``max_dim``.
        symmetrize: return ``(H + Hᵀ)/2`` (removes rounding asymmetry).
        **operator_kwargs: passed to :class:`~curvsketch.HessianOperator` (engine, ...).

    Returns:
        The Hessian matrix in the model's dtype, on its device.
    """
    op = HessianOperator(model, loss_fn, data, params=params, **operator_kwargs)
    H = dense_matrix(op, block_size=block_size, max_dim=max_dim, force=force)
    return (H + H.T) / 2 if symmetrize else H


def dense_ggn(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    data: Any,
    *,
    params: Iterable[torch.Tensor] | None = None,
    block_size: int = 256,
    max_dim: int = DEFAULT_MAX_DIM,
    force: bool = False,
    **operator_kwargs: Any,
) -> torch.Tensor:
    """The generalized Gauss-Newton matrix as a dense ``(D, D)`` matrix (small ``D`` only).

    Same arguments as :func:`dense_hessian`.
    """
    op = GGNOperator(model, loss_fn, data, params=params, **operator_kwargs)
    G = dense_matrix(op, block_size=block_size, max_dim=max_dim, force=force)
    return (G + G.T) / 2
