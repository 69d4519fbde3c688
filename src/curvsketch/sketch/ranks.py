"""Products split over ``torch.distributed`` ranks: each rank multiplies its columns, all gather.

Under ``torchrun`` (an initialised process group of more than one rank), the block
recoveries (``"krylov"``, ``"hmt"``) run on every rank with the same settings; each block
product ``H X`` is then split by columns: rank ``r`` computes ``H X[:, cols_r]`` (a
contiguous slice of ``⌈m / world⌉`` columns) and one ``all_gather`` gives every rank the
whole ``H X``. Everything after the product (projections, QR, Rayleigh–Ritz) runs on every
rank on the same gathered data, so all ranks hold the same result, and it equals one
process to rounding (the product of a column slice can round differently from the product
of the whole block). This is the column-partitioned block product of distributed block
Krylov and randomized range finders (e.g. Halko, Martinsson, Tropp, SIAM Review 2011, §6;
the data movement is that of an all-gather, Chan et al., "Collective communication",
Concurrency Comput. 19, 2007).

Not split:

* a ``collective`` operator (``op.collective is True``, e.g.
  :class:`curvsketch.operators.DataParallelOperator`): it already spreads each product over
  the ranks (by samples) and needs every rank to multiply the *same* ``X``;
* ranks whose operators or plans differ (a per-rank fingerprint and the plan are compared
  once, with one ``all_gather_object``): each rank then runs alone, as without
  ``torch.distributed``, and a warning says so.

So a solve is collective under ``torchrun``: call it on every rank, in the same order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from typing import Any

import torch

from curvsketch.sketch.measure import column_major
from curvsketch.sketch.plan import SketchPlan

__all__ = ["RankSplitOperator", "agree", "dist_rank_world", "split_over_ranks"]


def dist_rank_world() -> tuple[int, int] | None:
    """``(rank, world_size)`` of an initialised group of more than one rank, else ``None``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return None


def agree(value: Any) -> list[Any]:
    """``value`` of every rank (``all_gather_object``), or ``[value]`` without a group."""
    ctx = dist_rank_world()
    if ctx is None:
        return [value]
    out: list[Any] = [None] * ctx[1]
    torch.distributed.all_gather_object(out, value)
    return out


def _comm_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _signature(op: Any, plan: SketchPlan | None) -> str:
    """A short hash of what must agree over the ranks for a split product."""
    from curvsketch.store.identity import fingerprint

    fp = fingerprint(op, probe=False)
    settings = None if plan is None else repr(dataclasses.replace(plan, device=None))
    text = json.dumps([fp, settings], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RankSplitOperator:
    """``op @ X`` with the columns of ``X`` split over the ranks and gathered (see module).

    Args:
        op: the operator (the same on every rank).
        rank, world: this process's rank and the world size.

    Attributes:
        shape, dtype, device: those of ``op``.
        local_columns: columns this rank has multiplied so far.
    """

    def __init__(self, op: Any, rank: int, world: int) -> None:
        self.op, self.rank, self.world = op, rank, world
        self.shape, self.dtype, self.device = op.shape, op.dtype, op.device
        self.local_columns = 0

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        dist = torch.distributed
        m, rows = int(x.shape[1]), int(self.shape[0])
        per = -(-m // self.world)
        c0, c1 = min(m, self.rank * per), min(m, (self.rank + 1) * per)
        comm = _comm_device()
        buf = torch.zeros((per, rows), dtype=x.dtype, device=comm)
        error: Exception | None = None
        try:
            if c1 > c0:
                local = self.op @ x[:, c0:c1]
                if not isinstance(local, torch.Tensor) or tuple(local.shape) != (rows, c1 - c0):
                    got = tuple(local.shape) if isinstance(local, torch.Tensor) else local
                    raise ValueError(
                        f"{type(self.op).__name__} returned {got!r} for a ({x.shape[0]}, "
                        f"{c1 - c0}) block; expected ({rows}, {c1 - c0})"
                    )
                buf[: c1 - c0] = local.T.to(comm)
                self.local_columns += c1 - c0
        except Exception as err:  # raised below on every rank, after the collective
            error = err
        failed = torch.zeros(self.world, dtype=torch.float64, device=comm)
        failed[self.rank] = float(error is not None)
        dist.all_reduce(failed)
        if bool(failed.any()):
            if error is not None:
                raise error
            bad = [r for r in range(self.world) if failed[r]]
            raise RuntimeError(f"the product failed on rank(s) {bad}; see their error")
        parts = [torch.empty_like(buf) for _ in range(self.world)]
        dist.all_gather(parts, buf)
        out = column_major((rows, m), dtype=x.dtype, device=x.device)
        for r, part in enumerate(parts):
            r0, r1 = min(m, r * per), min(m, (r + 1) * per)
            if r1 > r0:
                out[:, r0:r1] = part[: r1 - r0].T.to(x.device)
        return out


def split_over_ranks(op: Any, plan: SketchPlan | None = None) -> Any:
    """``op`` whose block products are split over the ranks (:class:`RankSplitOperator`).

    Returns ``op`` itself without an initialised group of several ranks, for a
    ``collective`` operator (every rank multiplies whole blocks), or when the ranks'
    operators or plans differ (then with a warning). Collective: call on every rank.

    Args:
        op: the operator.
        plan: the solve's plan (compared over the ranks with the operator's fingerprint).
    """
    ctx = dist_rank_world()
    if ctx is None or getattr(op, "collective", False):
        return op
    signatures = agree(_signature(op, plan))
    if len(set(signatures)) > 1:
        warnings.warn(
            "torch.distributed is initialised but the ranks run different operators or "
            "settings; each rank multiplies its own blocks whole (no split over ranks). Run "
            "the same solve on every rank to split the products",
            stacklevel=2,
        )
        return op
    return RankSplitOperator(op, *ctx)
