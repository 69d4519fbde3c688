"""Sketches measured into a store: resumable, split over workers, recovered later.

This module holds the single pass and the public entry points of every stored recovery:
:func:`measure`, :func:`measure_plan`, :func:`recover` and :func:`solve_stored` hand a
``"krylov"`` or ``"hmt"`` plan to :mod:`.stored_krylov` / :mod:`.stored_hmt` (a step
store: each Krylov block with the recurrence's state, each block of each HMT pass,
committed atomically; :mod:`curvsketch.store.steps`). The rest of this docstring is the
single pass.

:func:`measure` computes the blocks of products a store still lacks (optionally only one
worker's share, ``block % num_workers == worker``) and commits each atomically;
:func:`recover` turns a complete store into an :class:`EighResult`, in memory or, above a
memory budget, out of core (:mod:`.outofcore`). :func:`curvsketch.sketch.seigh` with
``store=`` runs both. The measurements are those of Fernandez et al., TMLR 2025, §3,
Alg. 2 (after Tropp, Yurtsever, Udell, Cevher 2019): block ``b`` holds products
``y_i = H ψ_i``, ``i ∈ [b·B, (b+1)·B)``, their ``Y`` columns (``i < o``) and ``Φ y_i``.
Equal settings give bitwise-equal blocks, so a resumed or distributed run equals an
uninterrupted one.

What a store refuses to mix: the run identity (:class:`curvsketch.store.RunIdentity`)
holds the sizes, seeds and layout, hashes and descriptions of the operator, and the digest
of one probe product ``H v`` (:mod:`curvsketch.store.probe`). :func:`measure` compares
every field but the probe before any product, then measures its first missing block,
then the probe (one extra product per call, so that an ``engine="auto"`` operator picks
its engine on a real block), and compares the probe before committing anything: a store
of another operator costs at most one block of products and is left untouched. Before
recovering, :func:`recover` checks that every done block's chunks exist with their size
and are finite (:mod:`curvsketch.store.integrity`) and names any damaged block.

Under ``torchrun``: when ``torch.distributed`` is initialised and no worker is given,
the rank and world size split the blocks, all ranks meet at ``dist.barrier()`` after
measuring, and only rank 0 recovers (:func:`seigh` returns ``None`` on the other ranks).
The store must be a path on a file system all ranks share. A ``collective`` operator
(``op.collective is True``, e.g. :class:`curvsketch.operators.DataParallelOperator`, which
spreads every product over the ranks itself) is not split: every rank measures every
block (rank 0's list of missing blocks is broadcast) and only rank 0 writes. For
``"krylov"`` and ``"hmt"`` every rank runs the whole recovery, the columns of each product
split over the ranks (:mod:`.ranks`; whole for a ``collective`` operator), and only rank 0
writes to a store on disk.
"""

from __future__ import annotations

from typing import Any

import torch

from curvsketch.sketch.factors import Factors, to_result
from curvsketch.sketch.plan import SketchPlan, make_plan
from curvsketch.sketch.result import EighResult
from curvsketch.sketch.stored_common import (
    STORED_RECOVERIES,
    distributed_worker,
    plan_identity,
)
from curvsketch.sketch.stored_singlepass import (
    measure_singlepass_store,
    recover_singlepass_store,
)
from curvsketch.sketch.symmetry import SYMMETRY_PRODUCTS, check_symmetric
from curvsketch.store import (
    MeasurementStore,
    RunIdentity,
    StepStore,
    ZarrStore,
)
from curvsketch.store.zarr_steps import STEPS_FORMAT, ZarrStepStore, store_format

__all__ = [
    "distributed_worker",
    "measure",
    "measure_plan",
    "plan_identity",
    "recover",
    "run_identity",
    "solve_stored",
]


def run_identity(
    op: Any,
    outer: int,
    inner: int | None,
    *,
    noise: str,
    seed: int,
    block_size: int | None,
    probe: bool = True,
) -> RunIdentity:
    """The :class:`RunIdentity` of a single-pass run (sizes validated by :func:`make_plan`).

    Args:
        op, outer, inner, noise, seed, block_size: as in :func:`measure`.
        probe: as in :func:`plan_identity`.
    """
    plan = make_plan(op, outer, inner, noise=noise, seed=seed, block_size=block_size, who="measure")
    return plan_identity(op, plan, probe=probe)


def measure(
    op: Any,
    outer: int,
    inner: int | None = None,
    *,
    store: Any,
    recovery: str = "singlepass",
    noise: str = "ssrft",
    seed: int = 0,
    block_size: int | None = None,
    power_iters: int = 0,
    which: str = "LM",
    worker: int | None = None,
    num_workers: int | None = None,
    passes: Any = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    check_symmetry: bool = True,
) -> MeasurementStore | StepStore:
    """Measure the blocks of a sketch this worker owns and ``store`` still lacks.

    Args:
        op: symmetric ``D × D`` operator.
        outer: ``o``.
        inner: ``s`` (default ``min(2·o, D)``): the single pass's products, or the Krylov
            basis size (``recovery="krylov"``); ``None`` for ``"hmt"``.
        store: a local path (Zarr), ``"memory"`` or a store object
            (:class:`MeasurementStore` for the single pass, :class:`StepStore` else).
        recovery: ``"singlepass"``, ``"krylov"`` (sequential: one process, or the ranks of
            ``torchrun`` splitting each block's columns) or ``"hmt"`` (pass by pass).
        noise, seed, block_size, power_iters, which: as in :func:`curvsketch.sketch.seigh`;
            all part of the store's run identity.
        worker: this worker's index (with ``num_workers``); default: the
            ``torch.distributed`` rank if initialised, else 0.
        num_workers: number of workers; blocks with ``b % num_workers == worker`` are
            this worker's (for ``"hmt"``: of each pass).
        passes: ``"hmt"`` only: the passes this call may measure (default: every pass
            it can; with several workers it stops at the first pass that others must
            finish, see :func:`curvsketch.sketch.stored_hmt.measure_hmt`).
        progress: report blocks done / total on stderr, reused blocks included.
        timings: optional dict; adds ``measure`` seconds.
        check_symmetry: before the first block, compare ``uᵀHv`` with ``vᵀHu``
            (:func:`curvsketch.sketch.symmetry.check_symmetric`, 2 products; skipped when
            this worker has nothing left to measure). ``seigh`` checks before calling and
            passes ``False``.

    Products: those of the missing blocks of this worker, plus one probe product ``H v``
    for the run identity (skipped for a dense operator whose matrix is hashed whole). An
    operator that counts its products (``op.num_products``) shows the probe; the
    :class:`EighResult` of :func:`recover` counts the sketch's products only.

    Returns:
        The bound store. Under ``torch.distributed`` every rank has passed a barrier, so
        the store is complete on return.

    Raises:
        StoreMismatchError: the store holds another run (every differing field named;
            nothing is written to it).
        AsymmetricOperatorError: ``op`` is not symmetric (nothing is written).
    """
    plan = make_plan(
        op,
        outer,
        inner,
        recovery=recovery,
        noise=noise,
        seed=seed,
        block_size=block_size,
        power_iters=power_iters,
        which=which,
        who="measure",
    )
    return measure_plan(
        op,
        plan,
        store=store,
        worker=worker,
        num_workers=num_workers,
        passes=passes,
        progress=progress,
        timings=timings,
        check_symmetry=check_symmetry,
    )


def _check_stored(plan: SketchPlan, who: str) -> None:
    if plan.recovery not in STORED_RECOVERIES:
        iters = f", power_iters={plan.power_iters}" if plan.power_iters else ""
        raise ValueError(
            f"{who}: store= supports recovery='singlepass', 'krylov' or 'hmt', got "
            f"recovery={plan.recovery!r}{iters}; use store=None for 'tropp' and 'nystrom' "
            "(they measure in memory)"
        )


def measure_plan(
    op: Any,
    plan: SketchPlan,
    *,
    store: Any,
    worker: int | None = None,
    num_workers: int | None = None,
    passes: Any = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    check_symmetry: bool = True,
) -> MeasurementStore | StepStore:
    """:func:`measure` of a ``plan`` (:func:`make_plan`) already validated."""
    _check_stored(plan, "measure")
    if plan.recovery == "singlepass":
        if passes is not None:
            raise ValueError("passes= is for recovery='hmt' only; leave it None")
        return measure_singlepass_store(
            op, plan, store, worker, num_workers, progress, timings, check_symmetry
        )
    if check_symmetry:
        check_symmetric(op, "measure", block_size=min(plan.block_size, SYMMETRY_PRODUCTS))
    if plan.recovery == "krylov":
        from curvsketch.sketch.stored_krylov import measure_krylov

        if passes is not None or (num_workers or 1) > 1:
            raise ValueError(
                "recovery='krylov' is sequential (block j + 1 needs block j): measure it in "
                "one process (it resumes after the last committed block), or under torchrun, "
                "where the ranks split the columns of every block; passes= is for 'hmt'"
            )
        st = measure_krylov(op, plan, store=store, progress=progress, timings=timings)[0]
    else:
        from curvsketch.sketch.stored_hmt import measure_hmt

        st = measure_hmt(
            op,
            plan,
            store=store,
            worker=worker,
            num_workers=num_workers,
            passes=passes,
            progress=progress,
            timings=timings,
        ).store
    _, _, under_dist = distributed_worker(worker, num_workers)
    if under_dist:
        torch.distributed.barrier()
    return st


def _step_store(store: Any) -> StepStore | None:
    """The step store ``store`` is or holds (``None``: a single-pass store)."""
    if isinstance(store, StepStore):
        return store
    if isinstance(store, str) and store == "memory":
        return None
    if isinstance(store, str | ZarrStore) or hasattr(store, "__fspath__"):
        path = store.path if isinstance(store, ZarrStore) else store
        if store_format(path) == STEPS_FORMAT:
            st = ZarrStepStore(path)
            st.open_existing()
            return st
    return None


def _recover_steps(st: StepStore, timings: dict[str, float] | None) -> EighResult:
    if st.identity.recovery == "krylov":
        from curvsketch.sketch.stored_krylov import recover_krylov

        return recover_krylov(st, timings=timings)
    from curvsketch.sketch.stored_hmt import recover_hmt_store

    return recover_hmt_store(st, timings=timings)


def recover(
    store: Any,
    *,
    memory_budget: int | None = None,
    block_size: int | None = None,
    device: torch.device | str = "cpu",
    timings: dict[str, float] | None = None,
) -> EighResult:
    """Single-pass recovery from a complete store (SEIGH, Fernandez et al., TMLR 2025,
    Alg. 2; Tropp, Yurtsever, Udell, Cevher 2019).

    Args:
        store: a path, or a :class:`MeasurementStore` filled by :func:`measure`.
        memory_budget: bytes; when ``Y`` (``D·o`` entries) is larger, recover out of core
            (Direct TSQR, see :mod:`.outofcore`): the result's ``Q`` is then a
            :class:`curvsketch.store.ZarrMatrix` of the eigenvectors in the store (``V`` is
            ``None``). Needs a Zarr store.
        block_size: columns per test-operator application (default: the store's block).
        device: where the in-memory recovery runs.
        timings: optional dict; adds ``qr``, ``core``, ``eigh`` and ``eigvec`` seconds.

    Before recovering, every done block is checked (:mod:`curvsketch.store.integrity`):
    its chunk files exist with their size (one ``stat`` per chunk) and its entries are
    finite — in memory on the arrays the recovery reads anyway; out of core ``Z`` up
    front and ``Y`` only if the recovery fails or gives non-finite eigenvalues (so a
    sound store is read once, a damaged one once more to name the blocks).

    Raises:
        ValueError: blocks are missing (the message says how many and how to finish).
        DamagedBlocksError: a done block's data are missing, truncated or not finite (the
            message names each block, its products and how to measure it again).

    A store of ``"krylov"`` or ``"hmt"`` (a :class:`StepStore`, or a path holding one) is
    recovered in memory by :func:`curvsketch.sketch.stored_krylov.recover_krylov` /
    :func:`curvsketch.sketch.stored_hmt.recover_hmt_store` (``memory_budget``,
    ``block_size`` and ``device`` do not apply).
    """
    steps = _step_store(store)
    if steps is not None:
        if memory_budget is not None:
            raise ValueError(
                f"memory_budget={memory_budget}: out-of-core recovery is for "
                f"recovery='singlepass' only; the {steps.identity.recovery!r} store "
                f"{steps.location} recovers in memory (leave memory_budget=None)"
            )
        return _recover_steps(steps, timings)
    return recover_singlepass_store(
        store, memory_budget=memory_budget, block_size=block_size, device=device, timings=timings
    )


def solve_stored(
    op: Any,
    plan: SketchPlan,
    *,
    store: Any,
    memory_budget: int | None = None,
    progress: bool = True,
    check_symmetry: bool = True,
    symmetry_rtol: float | None = None,
) -> EighResult | None:
    """``seigh(..., store=...)``: measure the missing blocks of ``plan`` into the store, then
    recover (rank 0 only under ``torch.distributed``: other ranks return ``None``).

    The symmetry check of :func:`curvsketch.sketch.seigh` runs before any product of the
    store; the store's identity checks run inside the measuring functions. ``"krylov"``
    and ``"hmt"`` recover from the state they end with (no second read of the store).
    """
    if store is None:
        raise ValueError(
            f"memory_budget={memory_budget!r} needs store=PATH (the out-of-core recovery keeps "
            "the sketch and its basis on disk)"
        )
    _check_stored(plan, "seigh")
    if memory_budget is not None and plan.recovery != "singlepass":
        raise ValueError(
            f"memory_budget={memory_budget}: out-of-core recovery is for "
            f"recovery='singlepass' only; recovery={plan.recovery!r} recovers in memory "
            "(leave memory_budget=None)"
        )
    if check_symmetry:
        width = min(plan.block_size, SYMMETRY_PRODUCTS)
        check_symmetric(op, "seigh", rtol=symmetry_rtol, block_size=width)
    timings: dict[str, float] = {}
    if plan.recovery != "singlepass":
        factors = _solve_steps(op, plan, store, progress, timings)
        rank, _, under_dist = distributed_worker(None, None)
        if under_dist:
            torch.distributed.barrier()
            if rank != 0:
                return None
        return to_result(plan, factors, timings)
    st = measure_plan(
        op, plan, store=store, progress=progress, timings=timings, check_symmetry=False
    )
    rank, _, under_dist = distributed_worker(None, None)
    if under_dist and rank != 0:
        return None
    return recover(st, memory_budget=memory_budget, device=op.device, timings=timings)


def _solve_steps(
    op: Any, plan: SketchPlan, store: Any, progress: bool, timings: dict[str, float]
) -> Factors:
    if plan.recovery == "krylov":
        from curvsketch.sketch.stored_krylov import measure_krylov

        state = measure_krylov(op, plan, store=store, progress=progress, timings=timings)[1]
        return state.ritz(keep=plan.outer, which=plan.which, timings=timings)
    from curvsketch.sketch.stored_hmt import finish, measure_hmt

    run = measure_hmt(op, plan, store=store, progress=progress, timings=timings)
    assert run.q is not None and run.hq is not None
    return finish(plan, run.q, run.hq, run.shift, run.sign, timings)
