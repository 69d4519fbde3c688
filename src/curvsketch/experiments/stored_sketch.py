"""A study's sketch measured into a store by several processes, and recovered from it.

What ``curvsketch measure`` and ``curvsketch recover`` (:mod:`curvsketch.cli.distributed`)
run: the blocks of one worker (``block % of == worker``) of the plan that the study's
``[sketch]`` settings give on the operator (:func:`.study_operator.study_plan`: the same
sizes as ``curvsketch run``), committed to a shared store
(:func:`curvsketch.sketch.stored.measure_plan`), and the recovery from a complete store
(:func:`curvsketch.sketch.stored.recover`). ``recovery = "singlepass"`` splits its blocks
over the workers; ``"hmt"`` runs pass by pass (each pass's blocks split over the workers of
a job array; a pass needs the previous one); ``"krylov"`` is sequential (one process,
resumable). The CLI reaches the sketch layer through this module only.
"""

from __future__ import annotations

from typing import Any

from curvsketch.experiments.study_operator import study_plan
from curvsketch.sketch import EighResult
from curvsketch.sketch.plan import SketchPlan
from curvsketch.sketch.stored import measure_plan, recover
from curvsketch.sketch.stored_common import STORED_RECOVERIES, plan_of_identity
from curvsketch.store import MeasurementStore, StepStore

__all__ = ["STORED_RECOVERIES", "measure_share", "recover_store", "store_progress"]


def measure_share(
    op: Any,
    sketch: Any,
    store: Any,
    *,
    worker: int,
    num_workers: int,
    passes: list[int] | None = None,
    progress: bool = True,
) -> MeasurementStore | StepStore:
    """Measure this worker's missing blocks of the study's sketch into ``store``.

    Args:
        op: the curvature operator (:func:`curvsketch.cli.distributed.build_operator`).
        sketch: the ``[sketch]`` section of the study (``recovery`` one of
            :data:`STORED_RECOVERIES`).
        store: the store path shared by all workers.
        worker: this worker's index.
        num_workers: the number of workers (``"krylov"``: 1).
        passes: ``"hmt"`` only: the passes to measure (default: the next ones it can).
        progress: blocks done / total on stderr.

    Returns:
        The store (:func:`store_progress` tells whether it is complete).
    """
    return measure_plan(
        op,
        study_plan(op, sketch),
        store=store,
        worker=worker,
        num_workers=num_workers,
        passes=passes,
        progress=progress,
    )


def store_progress(st: MeasurementStore | StepStore) -> tuple[int, int, str]:
    """``(blocks done, blocks in all, detail)`` of a bound store; ``detail`` gives the
    blocks per pass of an ``"hmt"`` store (else ``""``)."""
    if isinstance(st, MeasurementStore):
        total = st.identity.num_blocks
        return total - len(st.missing_blocks()), total, ""
    from curvsketch.sketch.stored_hmt import pass_status
    from curvsketch.sketch.stored_krylov import step_key

    plan: SketchPlan = plan_of_identity(st.identity, "measure")
    done = st.done_steps()
    if plan.recovery == "krylov":
        n = 0
        while n < plan.blocks and step_key(n) in done:
            n += 1
        return n, plan.blocks, ""
    status = pass_status(plan, done)
    detail = ", ".join(f"pass {k}: {n}/{plan.blocks}" for k, n in enumerate(status))
    return sum(status), len(status) * plan.blocks, detail


def recover_store(store: Any, *, memory_budget: int | None = None) -> EighResult:
    """The eigendecomposition from a complete store (single pass: out of core above
    ``memory_budget``)."""
    return recover(store, memory_budget=memory_budget)
