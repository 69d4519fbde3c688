"""What every stored recovery shares: the run identity of a plan, and who measures what.

:func:`plan_identity` is the :class:`curvsketch.store.RunIdentity` of a
:class:`~curvsketch.sketch.plan.SketchPlan` (single pass, block Krylov or HMT: every
field that fixes the products, so that a store of another run is refused naming each
differing field); :func:`distributed_worker` resolves the worker of a job array or the
rank of ``torchrun``; :func:`plan_of_identity` rebuilds the plan a store was measured
with (for a recovery from the store alone).
"""

from __future__ import annotations

from typing import Any

import torch

from curvsketch.sketch.plan import SketchPlan, make_plan
from curvsketch.store import RunIdentity, fingerprint

__all__ = ["STORED_RECOVERIES", "distributed_worker", "plan_identity", "plan_of_identity"]

#: Recoveries that measure into a store (``seigh(store=...)``, ``measure``/``recover``).
STORED_RECOVERIES = ("singlepass", "krylov", "hmt")


def plan_identity(op: Any, plan: SketchPlan, *, probe: bool = True) -> RunIdentity:
    """The :class:`RunIdentity` of ``plan`` on ``op``.

    Args:
        op: the operator the plan was made for.
        plan: a plan of one of :data:`STORED_RECOVERIES`.
        probe: compute the probe product (one product of ``op``) into the identity;
            ``False`` leaves it out (:meth:`RunIdentity.with_probe` adds it later).
    """
    assert plan.recovery in STORED_RECOVERIES
    inner = plan.outer if plan.recovery == "hmt" else plan.inner
    assert inner is not None
    return RunIdentity(
        operator=fingerprint(op, probe=probe),
        recovery=plan.recovery,
        noise=plan.noise,
        seed=plan.seed,
        outer=plan.outer,
        inner=inner,
        block_size=plan.block_size,
        which=plan.which,
        power_iters=plan.power_iters,
    )


def plan_of_identity(ident: RunIdentity, who: str = "recover") -> SketchPlan:
    """The plan a store with identity ``ident`` was measured with (dtype from the store)."""
    return make_plan(
        ident.dim,
        ident.outer,
        None if ident.recovery == "hmt" else ident.inner,
        recovery=ident.recovery,
        noise=ident.noise,
        seed=ident.seed,
        block_size=ident.block_size,
        power_iters=ident.power_iters,
        which=ident.which,
        dtype=getattr(torch, ident.dtype),
        device="cpu",
        who=who,
    )


def distributed_worker(worker: int | None, num_workers: int | None) -> tuple[int, int, bool]:
    """Resolve ``(worker, num_workers, under_torch_distributed)``.

    Explicit values win; otherwise an initialised ``torch.distributed`` gives
    ``(rank, world_size, True)``; otherwise ``(0, 1, False)``.

    Raises:
        ValueError: only one of ``worker``/``num_workers`` given, or ``worker`` out of range.
    """
    if worker is None and num_workers is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size(), True
        return 0, 1, False
    if worker is None or num_workers is None:
        raise ValueError(
            f"worker={worker!r}, num_workers={num_workers!r}: give both (e.g. worker=0, "
            "num_workers=4) or neither"
        )
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be a positive integer, got {num_workers!r}")
    if isinstance(worker, bool) or not isinstance(worker, int) or not 0 <= worker < num_workers:
        raise ValueError(f"worker must be an integer in [0, {num_workers}), got {worker!r}")
    return worker, num_workers, False
