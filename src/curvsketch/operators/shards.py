"""Shards of the Hessian samples over ``torch.distributed`` ranks, and their weights.

A rank's local curvature operator is the mean over its own ``T_r`` loss terms, so the
operator of all ``T = Σ_r T_r`` terms is ``Σ_r (T_r / T) H_r`` (:func:`shard_weight`,
:func:`combine_shards`); :mod:`curvsketch.operators.data_parallel` applies it with one
``all_reduce``. Samples are split contiguously (:func:`shard_samples`, :func:`shard_data`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from curvsketch.operators.batches import check_data_form, num_samples, slice_samples

__all__ = ["combine_shards", "shard_data", "shard_samples", "shard_weight"]


def _dist() -> Any:
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None


def _rank_world(rank: int | None, world: int | None, group: Any = None) -> tuple[int, int]:
    if (rank is None) != (world is None):
        raise ValueError("rank and world must be given together (or both left None)")
    if rank is not None and world is not None:
        return rank, world
    dist = _dist()
    if dist is None:
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def shard_samples(n: int, rank: int, world: int) -> range:
    """The contiguous range of sample indices that ``rank`` holds out of ``n`` over ``world``.

    The first ``n % world`` ranks hold one sample more than the others; the ranges of all
    ranks, in rank order, are ``range(n)``.

    Args:
        n: the number of samples.
        rank: this rank, ``0 <= rank < world``.
        world: the number of ranks.

    Returns:
        ``range(start, stop)`` with ``stop > start``.

    Raises:
        ValueError: bad arguments, or ``n < world`` (some rank would hold no sample).
    """
    for name, value, low in (("n", n, 1), ("world", world, 1), ("rank", rank, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"shard_samples: {name} must be an integer >= {low}, got {value!r}")
    if rank >= world:
        raise ValueError(f"shard_samples: rank={rank} must be < world={world}")
    if n < world:
        raise ValueError(
            f"shard_samples: n={n} samples over world={world} ranks leaves {world - n} rank(s) "
            f"without samples; run on at most {n} rank(s) or use more samples"
        )
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def shard_data(data: Any, rank: int | None = None, world: int | None = None) -> list[tuple]:
    """This rank's part of ``data``: the samples of :func:`shard_samples` over all batches.

    The samples of all batches, in order, are numbered ``0 .. n-1`` and split contiguously;
    each batch contributes the part of it that falls in this rank's range (so a rank's
    shard may span several batches, and batch boundaries stay where they were). The
    tensors are views (slices) of the given ones: load only what a rank needs when the
    data itself does not fit, and pass the local batches to the operator directly.

    Args:
        data: one ``(inputs, targets)`` pair or a sequence of pairs (see
            :mod:`curvsketch.operators.batches`); the same on every rank.
        rank, world: default: the ``torch.distributed`` rank and world size (``0, 1``
            without a process group).

    Returns:
        The local batches, a list of ``(inputs, targets)`` pairs.

    Raises:
        ValueError: a batch that is not a pair, or fewer samples than ranks.
    """
    rank, world = _rank_world(rank, world)
    batches = list(check_data_form(data))
    sizes = []
    for i, batch in enumerate(batches):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(f"shard_data: batch {i} is not an (inputs, targets) pair")
        sizes.append(num_samples(batch[0], f"batch {i} inputs"))
    mine = shard_samples(sum(sizes), rank, world)
    out, offset = [], 0
    for (x, y), size in zip(batches, sizes, strict=True):
        lo, hi = max(mine.start, offset), min(mine.stop, offset + size)
        if lo < hi:
            out.append(
                (
                    slice_samples(x, lo - offset, hi - offset),
                    slice_samples(y, lo - offset, hi - offset),
                )
            )
        offset += size
    return out


def shard_weight(local_terms: int, total_terms: int) -> float:
    """The weight ``T_r / T`` of a shard's mean-loss curvature in the mean over all shards."""
    if local_terms < 0 or total_terms <= 0 or local_terms > total_terms:
        raise ValueError(
            f"shard_weight: need 0 <= local_terms <= total_terms and total_terms > 0, got "
            f"local_terms={local_terms}, total_terms={total_terms}"
        )
    return local_terms / total_terms


def combine_shards(parts: Sequence[torch.Tensor], terms: Sequence[int]) -> torch.Tensor:
    """``Σ_r (T_r / T) parts[r]``: what the all-reduce of :class:`DataParallelOperator` computes.

    Args:
        parts: each shard's product (or gradient), as computed by its local operator.
        terms: each shard's number of loss terms ``T_r``.

    Returns:
        The product (or gradient) of the operator over all shards' samples.
    """
    if len(parts) != len(terms) or not parts:
        raise ValueError(f"combine_shards: {len(parts)} parts for {len(terms)} term counts")
    total = sum(int(t) for t in terms)
    out = torch.zeros_like(parts[0])
    for part, t in zip(parts, terms, strict=True):
        out.add_(part, alpha=shard_weight(int(t), total))
    return out
