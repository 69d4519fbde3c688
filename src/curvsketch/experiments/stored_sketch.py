"""A study's sketch measured into a store by several processes, and recovered from it.

What ``curvsketch measure`` and ``curvsketch recover`` (:mod:`curvsketch.cli.distributed`)
run: the single-pass blocks of one worker (``block % of == worker``) of the plan that the
study's ``[sketch]`` settings give on the operator (:func:`.measure_step.study_plan`: the
same sizes as ``curvsketch run``), committed to a shared store
(:func:`curvsketch.sketch.stored.measure_plan`), and the recovery from a complete store
(:func:`curvsketch.sketch.stored.recover`). The CLI reaches the sketch layer through this
module only.
"""

from __future__ import annotations

from typing import Any

from curvsketch.experiments.measure_step import study_plan
from curvsketch.sketch import EighResult
from curvsketch.sketch.stored import measure_plan, recover
from curvsketch.store import MeasurementStore

__all__ = ["measure_share", "recover_store"]


def measure_share(
    op: Any,
    sketch: Any,
    store: Any,
    *,
    worker: int,
    num_workers: int,
    progress: bool = True,
) -> MeasurementStore:
    """Measure this worker's missing single-pass blocks of the study's sketch into ``store``.

    Args:
        op: the curvature operator (:func:`curvsketch.cli.distributed.build_operator`).
        sketch: the ``[sketch]`` section of the study (``recovery = "singlepass"``).
        store: the store path shared by all workers.
        worker: this worker's index.
        num_workers: the number of workers.
        progress: blocks done / total on stderr.

    Returns:
        The store (``missing_blocks()`` tells whether it is complete).
    """
    return measure_plan(
        op,
        study_plan(op, sketch),
        store=store,
        worker=worker,
        num_workers=num_workers,
        progress=progress,
    )


def recover_store(store: Any, *, memory_budget: int | None = None) -> EighResult:
    """The eigendecomposition from a complete store (out of core above ``memory_budget``)."""
    return recover(store, memory_budget=memory_budget)
