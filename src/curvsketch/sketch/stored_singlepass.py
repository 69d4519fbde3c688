"""The single-pass store: measure its blocks (workers, ranks) and recover from it.

The bodies behind :func:`curvsketch.sketch.stored.measure` and
:func:`curvsketch.sketch.stored.recover` for ``recovery="singlepass"`` (SEIGH, Fernandez
et al., TMLR 2025, §3, Alg. 2, after Tropp, Yurtsever, Udell, Cevher 2019); see
:mod:`curvsketch.sketch.stored` for the layout, the identity checks and the workers.
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
from curvsketch.sketch.stored_common import distributed_worker, plan_identity
from curvsketch.sketch.symmetry import SYMMETRY_PRODUCTS, check_symmetric
from curvsketch.sketch.timing import stage_timer
from curvsketch.sketch.writer import BlockWriter
from curvsketch.store import (
    DamagedBlocksError,
    MeasurementStore,
    ZarrStore,
    check_chunks,
    check_finite,
    open_store,
)
from curvsketch.store.identity import needs_probe
from curvsketch.store.integrity import nonfinite_blocks
from curvsketch.store.probe import probe_digest

__all__ = ["measure_singlepass_store", "recover_singlepass_store"]


def measure_singlepass_store(
    op: Any,
    plan: SketchPlan,
    store: Any,
    worker: int | None,
    num_workers: int | None,
    progress: bool,
    timings: dict[str, float] | None,
    check_symmetry: bool,
) -> MeasurementStore:
    """The single-pass blocks of this worker that ``store`` lacks (see ``stored.measure``)."""
    base = plan_identity(op, plan, probe=False)
    worker, num_workers, under_dist = distributed_worker(worker, num_workers)
    # A collective operator spreads each product over the ranks itself: every rank must
    # multiply the same blocks, so the blocks are not split and only rank 0 writes.
    collective = under_dist and bool(getattr(op, "collective", False))
    writes = not collective or worker == 0
    if collective:
        worker, num_workers = 0, 1
    st = open_store(store)
    st.check_compatible(base)  # every field but the probe, before any product
    psi = plan.test_operator(STREAM_PSI, base.inner)
    phi = plan.test_operator(STREAM_PHI, base.inner)
    mine = list(range(worker, plan.blocks, num_workers))
    done = st.done_blocks()
    todo = [b for b in mine if b not in done]
    if collective:  # rank 0's list, before it commits anything
        shared = [todo]
        torch.distributed.broadcast_object_list(shared, src=0)
        todo = shared[0]
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
        Progress(len(mine), desc, enabled=progress and writes, unit="blocks") as bar,
    ):
        first = block(todo[0]) if todo else None
        identity = base.with_probe(probe_digest(op)) if needs_probe(base.operator) else base
        if writes:
            st.bind(identity)  # creates the store, or compares the probe too
        bar.update(len(mine) - len(todo))
        writer = BlockWriter(st, bar) if writes else None
        try:
            for b in todo:  # the first was measured above
                y, z = first if first is not None else block(b)
                first = None
                if writer is not None:
                    writer.submit(b, y, z)
        finally:
            if writer is not None:
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


def recover_singlepass_store(
    store: Any,
    *,
    memory_budget: int | None = None,
    block_size: int | None = None,
    device: torch.device | str = "cpu",
    timings: dict[str, float] | None = None,
) -> EighResult:
    """:func:`curvsketch.sketch.stored.recover` of a single-pass store (its docstring)."""
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
