"""HMT with subspace iterations measured into a step store, pass by pass, block by block.

The two-pass recovery with ``p`` power iterations (Halko, Martinsson, Tropp, SIAM Review
53(2), 2011, Alg. 4.4 + 5.3; :mod:`.hmt`) makes ``p + 2`` passes over the operator, each
of ``o`` products in blocks of ``B``: pass 0 is the range finder ``P_0 = H Ψ[:o]ᵀ``, pass
``k`` (``1 ≤ k ≤ p + 1``) is ``P_k = H Q_{k−1}`` with ``Q_k = orth(P_k)``, and the last
pass ``H Q_p`` gives Rayleigh–Ritz. Each block ``b`` of pass ``k`` is the step
``p{k:02d}b{b:06d}``, which commits columns ``[b·B, (b+1)·B)`` of the array ``P{k}``
atomically (:mod:`curvsketch.store.steps`). The QR between passes is not stored: it is
recomputed from the complete stored pass, deterministically, so a resumed run recomputes
only its missing blocks and ends bitwise equal to an uninterrupted one. For
``which="LA"``/``"SA"`` the shift of :func:`~curvsketch.sketch.hmt.estimate_shift` is the
step ``shift`` (its value in the metadata), measured before pass 0.

The blocks of one pass are independent: they can be split over the workers of a job array
(``block % num_workers == worker``), pass after pass (``passes=``; a pass needs the
previous one complete). Under ``torchrun`` the ranks split the columns of each block
instead (:mod:`.ranks`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.factors import Factors, orthonormal_basis, to_result
from curvsketch.sketch.hmt import _Shifted, estimate_shift, recover_hmt, shift_back
from curvsketch.sketch.measure import apply_in_blocks, column_major, measure_block
from curvsketch.sketch.noise import STREAM_PSI
from curvsketch.sketch.plan import SketchPlan
from curvsketch.sketch.ranks import split_over_ranks
from curvsketch.sketch.result import EighResult
from curvsketch.sketch.stored_common import distributed_worker, plan_of_identity
from curvsketch.sketch.stored_steps import column_block, open_run
from curvsketch.sketch.timing import stage_timer
from curvsketch.sketch.writer import StepWriter
from curvsketch.store import ArraySpec, StepStore

__all__ = [
    "SHIFT_KEY",
    "HmtPasses",
    "hmt_arrays",
    "measure_hmt",
    "pass_key",
    "pass_status",
    "recover_hmt_store",
]

SHIFT_KEY = "shift"


def pass_key(k: int, block: int) -> str:
    """The step of block ``block`` of pass ``k``."""
    return f"p{k:02d}b{block:06d}"


def hmt_arrays(plan: SketchPlan) -> dict[str, ArraySpec]:
    """One ``D × o`` array ``P{k}`` per pass, chunked by block."""
    return {
        f"P{k}": ArraySpec(plan.dim, plan.outer, plan.block_size)
        for k in range(plan.power_iters + 2)
    }


def pass_status(plan: SketchPlan, done: dict[str, Any]) -> list[int]:
    """Blocks committed per pass."""
    passes = range(plan.power_iters + 2)
    return [sum(pass_key(k, b) in done for b in range(plan.blocks)) for k in passes]


class HmtPasses(NamedTuple):
    """What :func:`measure_hmt` leaves: the store, the shift, and, when this call saw the
    last pass complete, ``Q_p`` and ``H Q_p`` (else ``None``)."""

    store: StepStore
    shift: float
    sign: float
    q: torch.Tensor | None
    hq: torch.Tensor | None


def _shift(plan: SketchPlan, op: Any, done: dict, worker: int, writer: StepWriter, t: dict):
    if plan.which == "LM":
        return 0.0, 1.0
    sign = 1.0 if plan.which == "LA" else -1.0
    if SHIFT_KEY in done:
        return float(done[SHIFT_KEY]["shift"]), sign
    if worker != 0:
        raise ValueError(
            f"which={plan.which!r}: the shift estimate is not in the store yet; run worker 0 "
            "first (it measures the shift, then its blocks of pass 0)"
        )
    shift = estimate_shift(op, plan, None, t)
    writer.submit(SHIFT_KEY, {}, {"shift": shift})
    return shift, sign


def measure_hmt(
    op: Any,
    plan: SketchPlan,
    *,
    store: Any,
    worker: int | None = None,
    num_workers: int | None = None,
    passes: Any = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
) -> HmtPasses:
    """Measure this worker's missing blocks of the next passes of ``plan`` into ``store``.

    Passes run in order; a pass needs the previous one complete. This call stops at the
    first pass that stays incomplete after its own blocks (other workers' blocks missing)
    or that is not in ``passes``.

    Args:
        op: symmetric ``D × D`` operator (the plan's).
        plan: an ``"hmt"`` plan.
        store: a path, ``"memory"`` or a :class:`curvsketch.store.StepStore`.
        worker, num_workers: this worker's share of each pass (``b % num_workers ==
            worker``); default: all blocks (under ``torchrun`` the ranks split columns).
        passes: pass indices (``0 .. power_iters + 1``) this call may measure; default all.
        progress: blocks done / total (all passes) on stderr.
        timings: optional dict; adds ``measure`` and ``qr`` seconds.

    Raises:
        ValueError: a pass of ``passes`` whose previous pass is incomplete, or a bad pass.
    """
    worker, num_workers, under = distributed_worker(worker, num_workers)
    if under:
        worker, num_workers = 0, 1  # the ranks split the columns of every block
    total = plan.power_iters + 2
    wanted = set(range(total)) if passes is None else {int(k) for k in passes}
    if not wanted <= set(range(total)):
        raise ValueError(f"passes={sorted(wanted)}: the passes are 0..{total - 1}")
    timings = {} if timings is None else timings
    run = open_run(op, plan, store, hmt_arrays(plan), who="measure")
    st, done = run.store, run.done
    status = pass_status(plan, done)
    first = next((k for k in range(total) if status[k] < plan.blocks), total)
    if passes is not None and first < total and min(wanted) > first:
        raise ValueError(
            f"pass {min(wanted)} needs pass {first} complete ({status[first]}/{plan.blocks} "
            "blocks); measure it first"
        )
    product = split_over_ranks(op, plan)
    psi = plan.test_operator(STREAM_PSI, plan.outer)
    desc = f"seigh[hmt{'' if plan.which == 'LM' else ', ' + plan.which}] blocks"
    dtype, device = plan.dtype or torch.float64, plan.device or torch.device("cpu")
    q = hq = None
    measured = 0
    with Progress(total * plan.blocks, desc, enabled=progress, unit="blocks") as bar:
        bar.update(sum(status))
        writer = StepWriter(st if run.writes else None, bar)
        try:
            shift, sign = _shift(plan, product, done, worker, writer, timings)
            sketched = product if plan.which == "LM" else _Shifted(product, shift, sign)
            if first > 0:  # the input of the first pass to measure (or of the recovery)
                k = first - 1 if first < total else total - 2
                buf = column_major((plan.dim, plan.outer), dtype=dtype, device=device)
                column_block(buf, st, f"P{k}", 0, plan.outer)
                with stage_timer(timings, "qr"):
                    q = orthonormal_basis(buf)
            if first == total:  # every pass is stored
                hq = column_major((plan.dim, plan.outer), dtype=dtype, device=device)
                column_block(hq, st, f"P{total - 1}", 0, plan.outer)
            for k in range(first, total):
                if k not in wanted:
                    break
                buf = column_major((plan.dim, plan.outer), dtype=dtype, device=device)
                missing = [b for b in range(plan.blocks) if pass_key(k, b) not in done]
                mine = [b for b in missing if b % num_workers == worker]
                for b in mine:
                    i0, i1 = b * plan.block_size, min((b + 1) * plan.block_size, plan.outer)
                    with stage_timer(timings, "measure"):
                        if k == 0:
                            block = measure_block(sketched, psi, i0, i1, dtype=dtype, device=device)
                            buf[:, i0:i1] = block[0]
                        else:
                            assert q is not None
                            what = f"op @ Q (pass {k} of {total - 1}, block {b})"
                            x = q[:, i0:i1]
                            buf[:, i0:i1] = apply_in_blocks(sketched, x, i1 - i0, what=what)
                    writer.submit(pass_key(k, b), {f"P{k}": (i0, buf[:, i0:i1])})
                    measured += 1
                if len(mine) < len(missing):
                    break  # other workers' blocks of this pass are still missing
                for b in range(plan.blocks):
                    if b not in missing:
                        i0, i1 = b * plan.block_size, min((b + 1) * plan.block_size, plan.outer)
                        column_block(buf, st, f"P{k}", i0, i1)
                if k + 1 < total:
                    with stage_timer(timings, "qr"):
                        q = orthonormal_basis(buf)
                else:
                    hq = buf
        finally:
            writer.close()
    st.measured = measured
    if hq is None:
        q = None
    return HmtPasses(st, shift, sign, q, hq)


def finish(
    plan: SketchPlan,
    q: torch.Tensor,
    hq: torch.Tensor,
    shift: float,
    sign: float,
    timings: dict[str, float],
) -> Factors:
    """Rayleigh–Ritz of the last pass (``hq`` is overwritten), shifted back by ``which``."""
    return shift_back(recover_hmt(q, hq, timings=timings), plan, shift, sign, timings)


def recover_hmt_store(st: StepStore, *, timings: dict[str, float] | None = None) -> EighResult:
    """Rayleigh–Ritz from a complete HMT store: ``Q_p = orth(P_p)`` recomputed, then
    :func:`~curvsketch.sketch.hmt.recover_hmt` with ``H Q_p = P_{p+1}``.

    Raises:
        ValueError: blocks are missing (the message gives the count per pass).
    """
    plan = plan_of_identity(st.identity)
    done = st.done_steps()
    status = pass_status(plan, done)
    shift_missing = plan.which != "LM" and SHIFT_KEY not in done
    if shift_missing or any(n < plan.blocks for n in status):
        per_pass = ", ".join(f"pass {k}: {n}/{plan.blocks}" for k, n in enumerate(status))
        raise ValueError(
            f"recover: the HMT store {st.location} is incomplete ({per_pass} blocks"
            f"{'; no shift' if shift_missing else ''}); run measure() (or `curvsketch measure`"
            ", pass by pass) into this store first"
        )
    timings = {} if timings is None else timings
    sign = 1.0 if plan.which != "SA" else -1.0
    shift = float(done[SHIFT_KEY]["shift"]) if plan.which != "LM" else 0.0
    p = plan.power_iters
    dtype = plan.dtype or torch.float64
    buf = column_major((plan.dim, plan.outer), dtype=dtype, device="cpu")
    column_block(buf, st, f"P{p}", 0, plan.outer)
    with stage_timer(timings, "qr"):
        q = orthonormal_basis(buf)
    hq = column_major((plan.dim, plan.outer), dtype=dtype, device="cpu")
    column_block(hq, st, f"P{p + 1}", 0, plan.outer)
    return to_result(plan, finish(plan, q, hq, shift, sign, timings), timings)
