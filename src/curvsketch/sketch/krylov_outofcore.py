"""Out-of-core block Krylov: the ``D × m`` basis stays in the step store, memory holds a
few ``D × b`` blocks, row blocks of the basis and the ``m × m`` projected matrix.

The recurrence is that of :mod:`.krylov` (randomized block Krylov, Musco & Musco, NeurIPS
2015, Alg. 2; block Lanczos with full reorthogonalisation, Golub & Underwood 1977) and the
store that of :mod:`.stored_krylov` (each Krylov block committed with the recurrence's
state; a killed run resumes after the last committed block, and a store measured out of
core can be resumed or recovered in memory and vice versa). What changes is where the
basis lives: ``W = H Q_j`` is projected

1. in memory against the last two blocks ``[Q_{j−1}, Q_j]`` (kept as a ``D × 2b``
   buffer), exactly as in memory, then
2. against the whole basis ``Q = Q[:, :(j+1)b]`` on disk by classical Gram–Schmidt in row
   blocks: ``C = Σ_r Q_rᵀ W_r`` over the row blocks ``r`` (one read of each), then
   ``W_r −= Q_r C`` (a second read). Together with step 1 this is the in-memory
   projection ("twice is enough" for the local blocks: Giraud, Langou, Rozložník, Comput.
   Math. Appl. 50, 2005) with its sum over rows split into row blocks: equal to the
   in-memory recurrence to rounding.

The block QR of ``W`` (``D × b``) and, when ``W`` loses rank, the deflation fill (projected
against the disk basis the same way) run in memory. Rayleigh–Ritz needs only the ``m × m``
matrix ``T`` (:meth:`KrylovState.ritz`); the result's ``Q`` is the basis on disk as a
:class:`~curvsketch.store.ZarrMatrix` and ``V`` the ``m × k`` Ritz coefficients in memory,
so :meth:`EighResult.rows` reads only the chunks holding the rows it is asked for.

Memory (``s`` bytes per entry): at most :data:`FIXED_BLOCKS` ``D × b`` blocks (the
``[Q_{j−1}, Q_j]`` buffer, ``W``, the operator's output block, the QR's factor and
workspace), :data:`READ_CONCURRENCY` chunks being read by Zarr, plus one or two row blocks
of ``rows × m`` (two when the next one is read while the current one is multiplied), plus
the ``m × m`` matrices of the Ritz step (``T``, its eigenvectors). :func:`row_block_rows`
(:mod:`.krylov_rows`) picks ``rows`` so that all but the ``m × m`` matrices fit
``memory_budget``. Disk traffic: two reads of the basis so far per Krylov block,
``≈ D·m²/b`` entries over the run, plus one write of the basis.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from curvsketch.progress import Progress
from curvsketch.sketch.factors import Factors, to_result
from curvsketch.sketch.gram_schmidt import DEFLATION_ROUNDOFFS, next_block, project_full
from curvsketch.sketch.krylov import KrylovState, krylov_start
from curvsketch.sketch.krylov_rows import (
    FIXED_BLOCKS,
    MIN_ROWS,
    READ_CONCURRENCY,
    RowBlocks,
    row_block_rows,
)
from curvsketch.sketch.measure import apply_in_blocks, column_major
from curvsketch.sketch.plan import SketchPlan
from curvsketch.sketch.ranks import dist_rank_world
from curvsketch.sketch.result import EighResult
from curvsketch.sketch.stored_common import plan_of_identity
from curvsketch.sketch.stored_krylov import (
    committed_prefix,
    krylov_arrays,
    state_meta,
    step_key,
)
from curvsketch.sketch.stored_steps import open_run, to_tensor
from curvsketch.sketch.symmetry import SYMMETRY_PRODUCTS, check_symmetric
from curvsketch.sketch.timing import stage_timer
from curvsketch.sketch.writer import StepWriter
from curvsketch.store import MemoryStepStore, StepStore, ZarrMatrix

__all__ = [
    "FIXED_BLOCKS",
    "MIN_ROWS",
    "READ_CONCURRENCY",
    "OutOfCoreKrylovState",
    "RowBlocks",
    "basis_bytes",
    "out_of_core",
    "recover_krylov_out_of_core",
    "row_block_rows",
    "solve_krylov_out_of_core",
]


def _itemsize(plan: SketchPlan) -> int:
    dtype = plan.dtype or torch.float64
    return torch.empty((), dtype=dtype).element_size()


def basis_bytes(plan: SketchPlan) -> int:
    """Bytes of the ``D × m`` Krylov basis of ``plan``."""
    assert plan.inner is not None
    return plan.dim * plan.inner * _itemsize(plan)


def out_of_core(plan: SketchPlan, store: Any, memory_budget: Any) -> bool:
    """Whether a ``"krylov"`` plan with ``memory_budget`` runs out of core (its basis is
    larger than the budget); validates the budget and the store first.

    Raises:
        ValueError: ``memory_budget`` is not a positive integer, or it is given without a
            store path (``store=None``, ``"memory"`` or a :class:`MemoryStepStore`); or the
            basis does not fit and the run is under ``torch.distributed`` or the budget is
            too small (:func:`row_block_rows`).
    """
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int | np.integer):
        raise ValueError(f"memory_budget must be a positive integer (bytes), got {memory_budget!r}")
    if memory_budget <= 0:
        raise ValueError(f"memory_budget must be positive (bytes), got {memory_budget}")
    if store is None or (isinstance(store, str) and store == "memory"):
        raise ValueError(
            f"memory_budget={memory_budget} needs store=PATH for recovery='krylov' (the "
            "out-of-core recovery keeps the Krylov basis on disk); got "
            f"store={store!r}"
        )
    if isinstance(store, MemoryStepStore):
        raise ValueError(
            f"memory_budget={memory_budget} needs a store on disk (a path or a "
            "ZarrStepStore), not a MemoryStepStore: the basis would stay in memory"
        )
    if basis_bytes(plan) <= int(memory_budget):
        return False
    if dist_rank_world() is not None:
        raise ValueError(
            f"memory_budget={memory_budget}: the out-of-core Krylov recovery runs in one "
            "process; under torchrun leave memory_budget=None (the ranks split the columns "
            "of every block and each holds the basis)"
        )
    row_block_rows(plan.dim, plan.inner or 0, plan.block_size, _itemsize(plan), memory_budget)
    return True


class OutOfCoreKrylovState(KrylovState):
    """A :class:`KrylovState` whose basis is the step store's Zarr array ``Q``.

    Memory: the last two basis blocks ``near = [Q_{j−1}, Q_j]`` (``D × 2b``; ``near[:, b:]``
    is the block multiplied next), ``T`` (``m × m``) and the row blocks of
    :class:`RowBlocks`. The basis columns of a block are written by the caller's store
    commit (:func:`_writes`); ``before_read`` (the writer's flush) runs before the disk
    basis is read, so it holds every committed column.

    Args:
        plan: the ``"krylov"`` plan.
        array: the store's ``Q`` array (``D × m``).
        rows: rows per row block; ``ahead``: read ahead (see :class:`RowBlocks`).
        timings: optional dict for the row reads' ``read`` seconds.
    """

    def __init__(
        self,
        plan: SketchPlan,
        array: Any,
        rows: int,
        ahead: bool,
        timings: dict[str, float] | None = None,
    ) -> None:
        dtype = plan.dtype or torch.float64
        device = torch.device(plan.device or "cpu")
        self._setup(plan.dim, plan.block_size, dtype, device, plan.blocks, plan.seed)
        b = self.width
        self.near = column_major((self.dim, 2 * b), dtype=dtype, device=device)
        self.reader = RowBlocks(array, rows, ahead, self.near, timings)
        self.basis = ZarrMatrix(array)  # type: ignore[assignment]
        self.before_read: Callable[[], Any] | None = None

    def start(self, start: torch.Tensor, timings: dict[str, float] | None = None) -> None:
        """Orthonormalise the start block into ``near[:, b:]``."""
        with stage_timer(timings, "qr"):
            self.near[:, self.width :] = torch.linalg.qr(start, mode="reduced").Q

    def step(
        self,
        op: Any,
        *,
        block_size: int,
        on_block: Callable[[int], Any] | None = None,
        timings: dict[str, float] | None = None,
    ) -> None:
        """Multiply block ``done``, project it (in memory, then on disk) and append the next
        block to ``near``."""
        j, b, num_blocks = self.done, self.width, self.num_blocks
        c0, c1 = j * b, (j + 1) * b
        eps = torch.finfo(self.dtype).eps
        with stage_timer(timings, "measure"):
            what = f"op @ Q (Krylov block {j + 1} of {num_blocks})"
            w = apply_in_blocks(op, self.near[:, b:], block_size, what=what, on_block=on_block)
        with stage_timer(timings, "qr"):
            if self.before_read is not None:
                self.before_read()
            local = min(c1, 2 * b)
            near = self.near[:, 2 * b - local :]
            coef_near = near.T @ w
            w.addmm_(near, coef_near, alpha=-1)
            coef = project_full(
                w,
                lambda x: self.reader.coefficients(x, c1),
                lambda x, c: self.reader.subtract(x, c, c1),
            )
            coef[c1 - local :] += coef_near
            self.coupling[:c1, c0:c1] = coef
            self.scale = max(self.scale, float(coef.abs().max()))
            tol = DEFLATION_ROUNDOFFS * eps * max(self.scale, torch.finfo(self.dtype).tiny)
            if j + 1 < num_blocks:
                q, r = next_block(w, lambda x: self.reader.project(x, c1), tol, self.generator)
                self.coupling[c1 : c1 + b, c0:c1] = r
                self.near[:, :b] = self.near[:, b:]
                self.near[:, b:] = q
                del q
            else:
                self.last_r = torch.linalg.qr(w, mode="r").R
            del w
        self.done = j + 1


def _writes(state: OutOfCoreKrylovState, j: int) -> dict[str, tuple[int, torch.Tensor]]:
    """What step ``j`` commits (the columns of :func:`.stored_krylov._writes`)."""
    b = state.width
    c0, c1 = j * b, (j + 1) * b
    out: dict[str, tuple[int, torch.Tensor]] = {"T": (c0, state.coupling[:, c0:c1])}
    if j + 1 < state.num_blocks:
        out["Q"] = (0, state.near) if j == 0 else (c1, state.near[:, b:])
    else:
        if j == 0:
            out["Q"] = (0, state.near[:, b:])
        out["R"] = (0, state.last_r)
    return out


def _read_columns(array: Any, c0: int, c1: int, out: torch.Tensor, rows: int) -> None:
    """``out = Q[:, c0:c1]`` read in row blocks."""
    dim = int(array.shape[0])
    for r0 in range(0, dim, rows):
        r1 = min(dim, r0 + rows)
        out[r0:r1] = to_tensor(np.asarray(array[r0:r1, c0:c1]), out)


def _load(
    st: StepStore,
    plan: SketchPlan,
    done: dict[str, Any],
    n: int,
    rows: int,
    ahead: bool,
    timings: dict[str, float],
) -> OutOfCoreKrylovState:
    """The state after the committed blocks ``0..n-1``: ``near``, ``T`` and the deflation
    state from the store (the basis itself stays there)."""
    array = st.group["Q"]  # type: ignore[attr-defined]
    state = OutOfCoreKrylovState(plan, array, rows, ahead, timings)
    if n == 0:
        start = krylov_start(plan)
        state.start(start, timings)
        return state
    b = state.width
    chunk = max(rows, int(array.chunks[0]))
    _read_columns(array, (n - 1) * b, n * b, state.near[:, :b], chunk)
    if n < plan.blocks:
        _read_columns(array, n * b, (n + 1) * b, state.near[:, b:], chunk)
    state.coupling[:, : n * b] = to_tensor(st.read("T", 0, n * b), state.coupling)
    meta = done[step_key(n - 1)]
    state.scale = float(meta["scale"])
    raw = bytearray(base64.b64decode(meta["generator"]))
    state.generator.set_state(torch.frombuffer(raw, dtype=torch.uint8).clone())
    if n == plan.blocks:
        state.last_r = to_tensor(st.read("R"), state.last_r)
    state.done = n
    return state


def measure_out_of_core(
    op: Any,
    plan: SketchPlan,
    *,
    store: Any,
    memory_budget: int,
    progress: bool = True,
    timings: dict[str, float] | None = None,
) -> tuple[StepStore, OutOfCoreKrylovState]:
    """Measure the Krylov blocks ``store`` lacks with the basis on disk.

    Args:
        op: symmetric ``D × D`` operator (the plan's).
        plan: a ``"krylov"`` plan.
        store: a path or a :class:`~curvsketch.store.ZarrStepStore`.
        memory_budget: bytes (:func:`row_block_rows`).
        progress: Krylov blocks done / total on stderr.
        timings: optional dict; adds ``measure``, ``qr`` and ``read`` seconds.

    Returns:
        ``(store, state)``: the bound store (``measured``: the blocks this call multiplied)
        and the complete state.
    """
    timings = {} if timings is None else timings
    run = open_run(op, plan, store, krylov_arrays(plan), who="seigh")
    st = run.store
    if not hasattr(st, "group"):
        raise ValueError(f"memory_budget= needs a store on disk, got {st!r}")
    array = st.group["Q"]  # type: ignore[attr-defined]
    rows, ahead = row_block_rows(
        plan.dim,
        plan.inner or 0,
        plan.block_size,
        _itemsize(plan),
        memory_budget,
        int(array.chunks[0]),
    )
    n = committed_prefix(run.done, plan.blocks)
    state = _load(st, plan, run.done, n, rows, ahead, timings)
    desc = f"seigh[krylov out of core{'' if plan.which == 'LM' else ', ' + plan.which}] blocks"
    with Progress(plan.blocks, desc, enabled=progress, unit="blocks") as bar:
        bar.update(n)
        writer = StepWriter(st, bar)
        state.before_read = writer.flush
        try:
            while state.done < plan.blocks:
                j = state.done
                state.step(op, block_size=plan.block_size, timings=timings)
                writer.submit(step_key(j), _writes(state, j), state_meta(state))
        finally:
            writer.close()
            state.reader.close()
    st.measured = plan.blocks - n
    return st, state


def solve_krylov_out_of_core(
    op: Any,
    plan: SketchPlan,
    *,
    store: Any,
    memory_budget: int,
    progress: bool = True,
    check_symmetry: bool = True,
    symmetry_rtol: float | None = None,
) -> EighResult:
    """``seigh(..., recovery="krylov", store=PATH, memory_budget=B)`` when the basis is
    larger than ``B``: measure the missing blocks out of core, then Rayleigh–Ritz.

    Returns:
        An :class:`EighResult` whose ``Q`` is the basis on disk
        (:class:`~curvsketch.store.ZarrMatrix`) and ``V`` the ``m × k`` Ritz coefficients;
        ``timings`` also has ``read`` (seconds waiting for row blocks, part of ``qr``).
    """
    if not out_of_core(plan, store, memory_budget):
        raise ValueError(
            f"memory_budget={memory_budget} holds the {basis_bytes(plan)}-byte basis: "
            "use the in-memory stored recovery"
        )
    if check_symmetry:
        width = min(plan.block_size, SYMMETRY_PRODUCTS)
        check_symmetric(op, "seigh", rtol=symmetry_rtol, block_size=width)
    timings: dict[str, float] = {}
    state = measure_out_of_core(
        op, plan, store=store, memory_budget=memory_budget, progress=progress, timings=timings
    )[1]
    factors: Factors = state.ritz(keep=plan.outer, which=plan.which, timings=timings)
    return to_result(plan, factors, timings)


def recover_krylov_out_of_core(
    st: StepStore, *, timings: dict[str, float] | None = None
) -> EighResult:
    """Rayleigh–Ritz from a complete Krylov step store on disk without loading the basis:
    ``T`` and ``R`` are read, ``Q`` stays a :class:`~curvsketch.store.ZarrMatrix`.

    Raises:
        ValueError: blocks are missing, or the store is not on disk.
    """
    if not hasattr(st, "group"):
        raise ValueError(f"recover_krylov_out_of_core needs a store on disk, got {st!r}")
    plan = plan_of_identity(st.identity)
    done = st.done_steps()
    n = committed_prefix(done, plan.blocks)
    if n < plan.blocks:
        raise ValueError(
            f"recover: {plan.blocks - n} of {plan.blocks} Krylov blocks are missing from "
            f"{st.location}; run seigh(..., store=...) or measure() into it again"
        )
    timings = {} if timings is None else timings
    state = _load(st, plan, done, n, int(st.group["Q"].chunks[0]), False, timings)  # type: ignore[attr-defined]
    state.reader.close()
    return to_result(plan, state.ritz(keep=plan.outer, which=plan.which, timings=timings), timings)
