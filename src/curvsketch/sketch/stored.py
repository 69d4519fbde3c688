"""Single-pass SEIGH measured into a store: resumable, split over workers, recovered later.

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
The store must be a path on a file system all ranks share.
"""

from __future__ import annotations

from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.factors import Factors, to_result
from curvsketch.sketch.measure import measure_block
from curvsketch.sketch.noise import STREAM_PHI, STREAM_PSI
from curvsketch.sketch.plan import SketchPlan, make_plan
from curvsketch.sketch.result import EighResult
from curvsketch.sketch.singlepass import recover_singlepass
from curvsketch.sketch.symmetry import SYMMETRY_PRODUCTS, check_symmetric
from curvsketch.sketch.timing import stage_timer
from curvsketch.sketch.writer import BlockWriter
from curvsketch.store import (
    DamagedBlocksError,
    MeasurementStore,
    RunIdentity,
    ZarrStore,
    check_chunks,
    check_finite,
    fingerprint,
    open_store,
)
from curvsketch.store.identity import needs_probe
from curvsketch.store.integrity import nonfinite_blocks
from curvsketch.store.probe import probe_digest

__all__ = [
    "distributed_worker",
    "measure",
    "measure_plan",
    "plan_identity",
    "recover",
    "run_identity",
    "solve_stored",
]


def plan_identity(op: Any, plan: SketchPlan, *, probe: bool = True) -> RunIdentity:
    """The :class:`RunIdentity` of a single-pass ``plan`` on ``op``.

    Args:
        op: the operator the plan was made for.
        plan: a ``"singlepass"`` :class:`SketchPlan`.
        probe: compute the probe product (one product of ``op``) into the identity;
            ``False`` leaves it out (:meth:`RunIdentity.with_probe` adds it later).
    """
    assert plan.recovery == "singlepass" and plan.inner is not None
    return RunIdentity(
        operator=fingerprint(op, probe=probe),
        recovery=plan.recovery,
        noise=plan.noise,
        seed=plan.seed,
        outer=plan.outer,
        inner=plan.inner,
        block_size=plan.block_size,
    )


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


def measure(
    op: Any,
    outer: int,
    inner: int | None = None,
    *,
    store: Any,
    noise: str = "ssrft",
    seed: int = 0,
    block_size: int | None = None,
    worker: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    check_symmetry: bool = True,
) -> MeasurementStore:
    """Measure the single-pass sketch blocks this worker owns and ``store`` still lacks.

    Args:
        op: symmetric ``D × D`` operator.
        outer: ``o``.
        inner: ``s`` (default ``min(2·o, D)``); ``s`` products in all.
        store: a local path (Zarr), ``"memory"`` or a :class:`MeasurementStore`.
        noise: test-operator kind.
        seed: test-operator seed.
        block_size: products per block (default ``min(64, s)``); part of the identity.
        worker: this worker's index (with ``num_workers``); default: the
            ``torch.distributed`` rank if initialised, else 0.
        num_workers: number of workers; blocks with ``b % num_workers == worker`` are
            this worker's.
        progress: report blocks done / total on stderr, reused blocks included.
        timings: optional dict; adds ``measure`` seconds.
        check_symmetry: before the first block, compare ``uᵀHv`` with ``vᵀHu``
            (:func:`curvsketch.sketch.symmetry.check_symmetric`, 2 products; skipped when
            this worker has nothing left to measure). ``seigh`` checks before calling and
            passes ``False``.

    Products: those of the missing blocks of this worker, plus one probe product ``H v``
    for the run identity (skipped for a dense operator whose matrix is hashed whole). An
    operator that counts its products (``op.num_products``) shows the probe; the
    :class:`EighResult` of :func:`recover` counts the sketch's ``s`` products only.

    Returns:
        The bound store. Under ``torch.distributed`` every rank has passed a barrier, so
        the store is complete on return.

    Raises:
        StoreMismatchError: the store holds another run (every differing field named;
            nothing is written to it).
        AsymmetricOperatorError: ``op`` is not symmetric (nothing is written).
    """
    plan = make_plan(op, outer, inner, noise=noise, seed=seed, block_size=block_size, who="measure")
    return measure_plan(
        op,
        plan,
        store=store,
        worker=worker,
        num_workers=num_workers,
        progress=progress,
        timings=timings,
        check_symmetry=check_symmetry,
    )


def measure_plan(
    op: Any,
    plan: SketchPlan,
    *,
    store: Any,
    worker: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    check_symmetry: bool = True,
) -> MeasurementStore:
    """:func:`measure` of a single-pass ``plan`` (:func:`make_plan`) already validated."""
    base = plan_identity(op, plan, probe=False)
    worker, num_workers, under_dist = distributed_worker(worker, num_workers)
    st = open_store(store)
    st.check_compatible(base)  # every field but the probe, before any product
    psi = plan.test_operator(STREAM_PSI, base.inner)
    phi = plan.test_operator(STREAM_PHI, base.inner)
    mine = list(range(worker, plan.blocks, num_workers))
    done = st.done_blocks()
    todo = [b for b in mine if b not in done]
    if check_symmetry and todo:
        check_symmetric(op, "measure", block_size=min(base.block_size, SYMMETRY_PRODUCTS))
    who = f" (worker {worker}/{num_workers})" if num_workers > 1 else ""
    desc = f"seigh[singlepass] blocks{who}"

    def block(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        i0, i1 = base.block_range(b)
        y, z = measure_block(op, psi, i0, i1, inner=phi, dtype=op.dtype, device=op.device)
        assert z is not None
        return y, z

    with (
        stage_timer(timings, "measure"),
        Progress(len(mine), desc, enabled=progress, unit="blocks") as bar,
    ):
        first = block(todo[0]) if todo else None
        identity = base.with_probe(probe_digest(op)) if needs_probe(base.operator) else base
        st.bind(identity)  # creates the store, or compares the probe too: refused unwritten
        bar.update(len(mine) - len(todo))
        writer = BlockWriter(st, bar)
        try:
            for b in todo:  # the first was measured above
                y, z = first if first is not None else block(b)
                first = None
                writer.submit(b, y, z)
        finally:
            writer.close()
    if under_dist:
        torch.distributed.barrier()
    return st


def _bound(store: Any) -> MeasurementStore:
    st = open_store(store)
    if st._identity is None:
        if not isinstance(st, ZarrStore):
            raise ValueError(f"recover: {st!r} holds no measurements; run measure() into it first")
        if not (st.path / "zarr.json").is_file():
            raise FileNotFoundError(
                f"recover: no measurement store at {st.path}; run measure() (or `curvsketch "
                "measure`) into it first"
            )
        st.bind(st.stored_identity())
    return st


def _raise_if_damaged(st: MeasurementStore, err: BaseException | None) -> None:
    """After a failed out-of-core recovery: raise :class:`DamagedBlocksError` if a done
    block's ``Y`` columns are not finite (one more pass over ``Y``)."""
    problems = nonfinite_blocks(st, st.done_blocks())
    if problems:
        raise DamagedBlocksError(st, problems) from err


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
    """
    st = _bound(store)
    ident = st.identity
    missing = st.missing_blocks()
    if missing:
        raise ValueError(
            f"recover: {len(missing)} of {ident.num_blocks} blocks are missing from "
            f"{st.location} (first: {missing[:5]}); run measure() (or every `curvsketch "
            "measure --worker i --of n`) into this store first"
        )
    timings = {} if timings is None else timings
    plan = make_plan(
        ident.dim,
        ident.outer,
        ident.inner,
        noise=ident.noise,
        seed=ident.seed,
        block_size=ident.block_size,
        who="recover",
    )
    block = block_size or plan.block_size
    psi = plan.test_operator(STREAM_PSI, ident.inner)
    phi = plan.test_operator(STREAM_PHI, ident.inner)
    itemsize = torch.empty(0, dtype=getattr(torch, ident.dtype)).element_size()
    if memory_budget is not None and ident.dim * ident.outer * itemsize > memory_budget:
        if not isinstance(st, ZarrStore):
            raise ValueError(
                f"memory_budget={memory_budget} is below the outer sketch's "
                f"{ident.dim * ident.outer * itemsize} bytes: out-of-core recovery needs a "
                "store on disk; pass store=PATH"
            )
        from curvsketch.sketch.outofcore import recover_singlepass_out_of_core

        check_chunks(st)
        check_finite(st, read_y=False)  # Z (s × s); Y is checked only if the result is bad
        try:
            values, vectors = recover_singlepass_out_of_core(
                st, phi, psi, memory_budget=memory_budget, block_size=block, timings=timings
            )
        except Exception as err:
            _raise_if_damaged(st, err)
            raise
        if not bool(torch.isfinite(values).all()):
            _raise_if_damaged(st, None)
            raise FloatingPointError(
                f"recover: the out-of-core recovery from {st.location} gave non-finite "
                "eigenvalues although every block is finite; recover in memory (a larger "
                "memory_budget) to compare"
            )
        basis, rot = vectors, None
    else:
        check_chunks(st)
        y_np, z_np = st.read_y(), st.read_z()
        check_finite(st, y=y_np, z=z_np)
        y = torch.from_numpy(y_np).to(device)
        z = torch.from_numpy(z_np).to(device)
        factors = recover_singlepass(y, z, phi, psi, block_size=block, timings=timings)
        values, basis, rot = factors.values, factors.basis, factors.rot
    # out of core, the basis is a ZarrMatrix of the eigenvectors on disk (duck-typed)
    return to_result(plan, Factors(values, basis, rot), timings)  # type: ignore[arg-type]


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
    store; the store's identity checks run inside :func:`measure_plan`.
    """
    if store is None:
        raise ValueError(
            f"memory_budget={memory_budget!r} needs store=PATH (the out-of-core recovery keeps "
            "the sketch and its basis on disk)"
        )
    if plan.recovery != "singlepass":
        iters = f", power_iters={plan.power_iters}" if plan.power_iters else ""
        raise ValueError(
            f"store= supports recovery='singlepass' only, got recovery={plan.recovery!r}"
            f"{iters}; use store=None for 'tropp', 'hmt', 'nystrom' and 'krylov' (they "
            "measure in memory)"
        )
    if check_symmetry:
        width = min(plan.block_size, SYMMETRY_PRODUCTS)
        check_symmetric(op, "seigh", rtol=symmetry_rtol, block_size=width)
    timings: dict[str, float] = {}
    st = measure_plan(
        op, plan, store=store, progress=progress, timings=timings, check_symmetry=False
    )
    rank, _, under_dist = distributed_worker(None, None)
    if under_dist and rank != 0:
        return None
    return recover(st, memory_budget=memory_budget, device=op.device, timings=timings)
