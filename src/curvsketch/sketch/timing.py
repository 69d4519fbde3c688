"""Timing and thread helpers of the sketches, kept out of the recovery maths.

:func:`stage_timer` adds the wall time of a stage (``measure``, ``qr``, ``core``, ``eigh``,
``eigvec``) to a result's ``timings``; :func:`split_threads` shares torch's intra-op
threads between tasks that run side by side.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["STAGES", "split_threads", "stage_timer"]

#: The stages every :class:`curvsketch.sketch.EighResult` reports (0.0 when not run).
STAGES = ("measure", "qr", "core", "eigh", "eigvec")


@contextmanager
def stage_timer(timings: dict[str, float] | None, stage: str) -> Iterator[None]:
    """Add the wall time of the ``with`` body to ``timings[stage]`` (if ``timings``)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


@contextmanager
def split_threads(workers: int) -> Iterator[None]:
    """Give each of ``workers`` concurrent tasks ``1/workers`` of torch's intra-op threads
    for the duration (a process-wide setting, restored afterwards), so that tasks run side
    by side do not oversubscribe the CPUs."""
    before = torch.get_num_threads()
    share = max(1, before // max(1, workers))
    if share < before:
        torch.set_num_threads(share)
    try:
        yield
    finally:
        if share < before:
            torch.set_num_threads(before)
