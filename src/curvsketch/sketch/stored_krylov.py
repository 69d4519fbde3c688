"""Block Krylov measured into a step store: each block committed with the recurrence's state.

The basis of randomized block Krylov (Musco & Musco, NeurIPS 2015, Alg. 2; block Lanczos
with full reorthogonalisation, :mod:`.krylov`) is built block by block, and block ``j + 1``
needs block ``j``. After block ``j`` (``W = H Q_j`` projected, ``W = Q_{j+1} R_j``) the
step ``k{j:06d}`` commits, atomically (:mod:`curvsketch.store.steps`):

* ``Q`` columns ``[(j+1)·b, (j+2)·b)``: the next basis block (block 0 also ``[0, b)``);
* ``T`` columns ``[j·b, (j+1)·b)``: the projection coefficients and ``R_j``;
* ``R``: the last block's residual factor (last block only);
* metadata: the running largest coefficient (deflation tolerance) and the state of the
  random generator of the deflation fill.

That is the whole :class:`~curvsketch.sketch.krylov.KrylovState`: a run killed at any
moment resumes after the last committed block (the committed prefix is loaded) and ends
bitwise equal to an uninterrupted run. Store arrays: ``Q`` (``D × m``), ``T`` (``m × m``),
``R`` (``b × b``), chunked by Krylov block.
"""

from __future__ import annotations

import base64
from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.factors import to_result
from curvsketch.sketch.krylov import KrylovState, krylov_start
from curvsketch.sketch.plan import SketchPlan
from curvsketch.sketch.ranks import split_over_ranks
from curvsketch.sketch.result import EighResult
from curvsketch.sketch.stored_common import plan_of_identity
from curvsketch.sketch.stored_steps import column_block, open_run, to_tensor
from curvsketch.sketch.writer import StepWriter
from curvsketch.store import ArraySpec, StepStore

__all__ = [
    "committed_prefix",
    "krylov_arrays",
    "measure_krylov",
    "recover_krylov",
    "state_meta",
    "step_key",
]


def step_key(block: int) -> str:
    """The step of Krylov block ``block``."""
    return f"k{block:06d}"


def krylov_arrays(plan: SketchPlan) -> dict[str, ArraySpec]:
    """The arrays of a Krylov store: ``Q``, ``T``, ``R`` chunked by Krylov block."""
    assert plan.inner is not None
    m, b = plan.inner, plan.block_size
    return {"Q": ArraySpec(plan.dim, m, b), "T": ArraySpec(m, m, b), "R": ArraySpec(b, b, b)}


def committed_prefix(done: dict[str, Any], blocks: int) -> int:
    """How many Krylov blocks ``0, 1, …`` are committed in a row (``done``: the steps)."""
    n = 0
    while n < blocks and step_key(n) in done:
        n += 1
    return n


def _load(st: StepStore, plan: SketchPlan, done: dict[str, Any], n: int, **kw: Any) -> KrylovState:
    """The state after the committed blocks ``0..n-1`` (or a fresh one for ``n = 0``)."""
    start = krylov_start(plan)
    state = KrylovState(start, plan.blocks, plan.seed)
    if n == 0:
        state.start(start, kw.get("timings"))
        return state
    b, m = plan.block_size, state.total
    column_block(state.basis, st, "Q", 0, min((n + 1) * b, m))
    column_block(state.coupling, st, "T", 0, n * b)
    meta = done[step_key(n - 1)]
    state.scale = float(meta["scale"])
    raw = bytearray(base64.b64decode(meta["generator"]))
    state.generator.set_state(torch.frombuffer(raw, dtype=torch.uint8).clone())
    if n == plan.blocks:
        state.last_r = to_tensor(st.read("R"), state.last_r)
    state.done = n
    return state


def _writes(state: KrylovState, j: int) -> dict[str, tuple[int, torch.Tensor]]:
    b, m = state.width, state.total
    c0, c1 = j * b, (j + 1) * b
    out = {"T": (c0, state.coupling[:, c0:c1])}
    q0, q1 = (0 if j == 0 else c1), min((j + 2) * b, m)
    if q1 > q0:
        out["Q"] = (q0, state.basis[:, q0:q1])
    if j + 1 == state.num_blocks:
        out["R"] = (0, state.last_r)
    return out


def state_meta(state: KrylovState) -> dict[str, Any]:
    """The step metadata of ``state``: its deflation scale and generator state."""
    gen = state.generator.get_state().numpy().tobytes()
    return {"scale": state.scale, "generator": base64.b64encode(gen).decode("ascii")}


def measure_krylov(
    op: Any,
    plan: SketchPlan,
    *,
    store: Any,
    progress: bool = True,
    timings: dict[str, float] | None = None,
) -> tuple[StepStore, KrylovState]:
    """Measure the Krylov blocks ``store`` still lacks (after its committed prefix).

    Args:
        op: symmetric ``D × D`` operator (the plan's).
        plan: a ``"krylov"`` plan.
        store: a path, ``"memory"`` or a :class:`curvsketch.store.StepStore`.
        progress: Krylov blocks done / total on stderr (reused blocks included).
        timings: optional dict; adds ``measure`` and ``qr`` seconds.

    Returns:
        ``(store, state)``: the bound store (its ``measured`` attribute: the blocks this
        call multiplied) and the complete :class:`KrylovState`.
    """
    run = open_run(op, plan, store, krylov_arrays(plan), who="measure")
    n = committed_prefix(run.done, plan.blocks)
    state = _load(run.store, plan, run.done, n, timings=timings)
    product = split_over_ranks(op, plan)
    desc = f"seigh[krylov{'' if plan.which == 'LM' else ', ' + plan.which}] blocks"
    with Progress(plan.blocks, desc, enabled=progress, unit="blocks") as bar:
        bar.update(n)
        writer = StepWriter(run.store if run.writes else None, bar)
        try:
            while state.done < plan.blocks:
                j = state.done
                state.step(product, block_size=plan.block_size, timings=timings)
                writer.submit(step_key(j), _writes(state, j), state_meta(state))
        finally:
            writer.close()
    run.store.measured = plan.blocks - n
    return run.store, state


def recover_krylov(st: StepStore, *, timings: dict[str, float] | None = None) -> EighResult:
    """Rayleigh–Ritz (:meth:`KrylovState.ritz`) from a complete Krylov store.

    Raises:
        ValueError: blocks are missing (the message says how many and how to finish).
    """
    plan = plan_of_identity(st.identity)
    done = st.done_steps()
    n = committed_prefix(done, plan.blocks)
    if n < plan.blocks:
        raise ValueError(
            f"recover: {plan.blocks - n} of {plan.blocks} Krylov blocks are missing from "
            f"{st.location} (blocks {n}..{plan.blocks - 1}); run measure() (or `curvsketch "
            "measure`) into this store again: it resumes after block "
            f"{n - 1 if n else 'none'}"
        )
    timings = {} if timings is None else timings
    state = _load(st, plan, done, n)
    factors = state.ritz(keep=plan.outer, which=plan.which, timings=timings)
    return to_result(plan, factors, timings)
