"""Opening a step store for a run of ``"krylov"`` or ``"hmt"``: identity, ranks, done steps.

Shared by :mod:`.stored_krylov` and :mod:`.stored_hmt`. :func:`open_run` compares the
run identity (every field but the probe) before any product, computes the probe product
(one product of the operator; on every rank, so that a ``collective`` operator sees the
same calls everywhere), binds the store (which compares the probe too: a store of another
run is refused naming every differing field, nothing written) and returns the committed
steps. Under ``torch.distributed`` every rank runs the whole recovery (the products split
by columns, :mod:`.ranks`, or whole for a ``collective`` operator); only rank 0 writes to a
store on disk (a store in memory is per process: every rank fills its own), and the ranks
agree on the committed steps (those every rank sees) before any of them commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from curvsketch.sketch.plan import SketchPlan
from curvsketch.sketch.ranks import agree, dist_rank_world
from curvsketch.sketch.stored_common import plan_identity
from curvsketch.store import ArraySpec, StepStore, open_step_store
from curvsketch.store.identity import needs_probe
from curvsketch.store.probe import probe_digest

__all__ = ["StepRun", "column_block", "open_run", "to_tensor"]


class StepRun(NamedTuple):
    """An opened step store: ``store`` (bound), ``done`` (``{key: metadata}`` of the
    committed steps all ranks agree on) and ``writes`` (whether this process commits)."""

    store: StepStore
    done: dict[str, dict[str, Any]]
    writes: bool


def open_run(
    op: Any, plan: SketchPlan, store: Any, arrays: Mapping[str, ArraySpec], *, who: str
) -> StepRun:
    """Check, probe and bind ``store`` for ``plan`` on ``op``; see the module docstring.

    Raises:
        StoreMismatchError: the store holds another run (nothing is written to it).
        TypeError: ``store`` is not a path, ``"memory"`` or a :class:`StepStore`.
    """
    st = open_step_store(store, who=who)
    base = plan_identity(op, plan, probe=False)
    st.check_compatible(base)  # every field but the probe, before any product
    identity = base.with_probe(probe_digest(op)) if needs_probe(base.operator) else base
    ctx = dist_rank_world()
    if ctx is not None and st.shared:
        if ctx[0] == 0:
            st.bind(identity, arrays)  # creates the store
        torch.distributed.barrier()
        if ctx[0] != 0:
            st.bind(identity, arrays)
    else:
        st.bind(identity, arrays)
    done = st.done_steps()
    if ctx is not None:  # before anyone commits: every rank sees the same steps
        common = set.intersection(*(set(keys) for keys in agree(sorted(done))))
        done = {k: v for k, v in done.items() if k in common}
    writes = ctx is None or ctx[0] == 0 or not st.shared
    return StepRun(st, done, writes)


def to_tensor(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """``array`` as a tensor of ``like``'s dtype and device."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype=like.dtype, device=like.device)


def column_block(buffer: torch.Tensor, st: StepStore, name: str, c0: int, c1: int) -> None:
    """Fill columns ``[c0, c1)`` of ``buffer`` from array ``name`` of the store."""
    if c1 > c0:
        buffer[:, c0:c1] = to_tensor(st.read(name, c0, c1), buffer)
