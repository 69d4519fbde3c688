"""recovery="hmt" into a store, pass by pass: kill -9 and resume, crashes, job arrays."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _stored_ops import (  # noqa: E402
    SlowDense,
    done_steps,
    kill_at,
    one_thread,
    relative_difference,
    spectrum_matrix,
)

from curvsketch.sketch import SYMMETRY_PRODUCTS, seigh  # noqa: E402
from curvsketch.sketch.plan import make_plan  # noqa: E402
from curvsketch.sketch.stored import measure, recover  # noqa: E402
from curvsketch.sketch.stored_hmt import pass_status  # noqa: E402
from curvsketch.store import StoreMismatchError, ZarrStepStore  # noqa: E402

DIM, OUTER, BLOCK, ITERS = 400, 30, 5, 1  # 3 passes of 6 blocks
KW = {"recovery": "hmt", "block_size": BLOCK, "power_iters": ITERS}
PER_PASS = OUTER // BLOCK
BLOCKS = (ITERS + 2) * PER_PASS


@pytest.fixture(scope="module")
def matrix() -> torch.Tensor:
    return spectrum_matrix(DIM, seed=2)


def test_kill_nine_three_times_then_resume_equals_uninterrupted(tmp_path, matrix):
    reference = seigh(SlowDense(matrix), OUTER, progress=False, **KW)
    store = tmp_path / "store"
    settings = f"outer={OUTER}, recovery='hmt', block_size={BLOCK}, power_iters={ITERS}"
    after = kill_at(store, settings, matrix, [2, 7, 13], seed=5)
    assert after == sorted(after) and after[-1] < BLOCKS, after
    steps = len(done_steps(store))
    op = SlowDense(matrix)
    resumed = seigh(op, OUTER, store=store, progress=False, **KW)
    missing = BLOCKS - steps
    assert op.columns == SYMMETRY_PRODUCTS + missing * BLOCK  # only the missing blocks
    values, vectors = relative_difference(resumed, reference)
    print(
        f"hmt(power_iters=1) kill -9 x3: after kills {after}, recomputed {missing} of "
        f"{BLOCKS} blocks, max rel diff eigenvalues {values:.1e}, eigenvectors {vectors:.1e}"
    )
    assert values <= 1e-10 and vectors <= 1e-10, (values, vectors)


@pytest.mark.parametrize("crash_after", [1, PER_PASS, PER_PASS + 4, BLOCKS - 1])
def test_injected_crash_then_resume_is_bitwise(tmp_path, matrix, crash_after):
    store = tmp_path / "s"
    with one_thread():
        reference = seigh(SlowDense(matrix), OUTER, progress=False, **KW)
        op = SlowDense(matrix, fail_after=SYMMETRY_PRODUCTS + crash_after * BLOCK)
        with pytest.raises(RuntimeError, match="injected crash"):
            seigh(op, OUTER, store=store, progress=False, **KW)
        assert len(done_steps(store)) == crash_after
        op = SlowDense(matrix)
        resumed = seigh(op, OUTER, store=store, progress=False, **KW)
        stored = recover(store)
    assert op.columns == SYMMETRY_PRODUCTS + (BLOCKS - crash_after) * BLOCK
    for result in (resumed, stored):
        assert torch.equal(result.eigenvalues, reference.eigenvalues)
        assert torch.equal(result.eigenvectors, reference.eigenvectors)
        assert torch.equal(result.residual_norms, reference.residual_norms)


@pytest.mark.parametrize("which", ["LA", "SA"])
def test_shifted_hmt_resumes_with_its_stored_shift(tmp_path, matrix, which):
    kw = {**KW, "which": which, "power_iters": 2}
    with one_thread():
        reference = seigh(SlowDense(matrix), OUTER, progress=False, **kw)
        with pytest.raises(RuntimeError):  # after the shift (20 products) and 1 block
            seigh(
                SlowDense(matrix, fail_after=2 + 20 + BLOCK),
                OUTER,
                store=tmp_path / "s",
                progress=False,
                **kw,
            )
        assert "shift" in done_steps(tmp_path / "s")
        op = SlowDense(matrix)
        resumed = seigh(op, OUTER, store=tmp_path / "s", progress=False, **kw)
    assert op.columns == SYMMETRY_PRODUCTS + (4 * PER_PASS - 1) * BLOCK  # no shift again
    assert torch.equal(resumed.eigenvalues, reference.eigenvalues) and resumed.which == which


def test_job_array_pass_by_pass(tmp_path, matrix):
    """Two workers per pass; a pass waits for the previous one; recover finishes."""
    path = tmp_path / "s"
    kw = {"store": path, "progress": False, **KW}
    plan = make_plan(DIM, OUTER, recovery="hmt", block_size=BLOCK, power_iters=ITERS)
    with one_thread():
        reference = seigh(SlowDense(matrix), OUTER, progress=False, **KW)
        measure(SlowDense(matrix), OUTER, worker=1, num_workers=2, **kw)
        st = ZarrStepStore(path)
        assert pass_status(plan, st.done_steps()) == [3, 0, 0]  # stops: pass 0 incomplete
        with pytest.raises(ValueError, match="pass 1 needs pass 0 complete"):
            measure(SlowDense(matrix), OUTER, worker=0, num_workers=2, passes=[1], **kw)
        for k in range(ITERS + 2):
            for w in (0, 1):
                op = SlowDense(matrix)
                measure(op, OUTER, worker=w, num_workers=2, passes=[k], **kw)
            assert pass_status(plan, st.done_steps())[k] == PER_PASS
        with pytest.raises(ValueError):  # passes= is for hmt
            measure(SlowDense(matrix), OUTER, 40, store=tmp_path / "x", passes=[0])
        result = recover(path)
    assert torch.equal(result.eigenvalues, reference.eigenvalues)
    assert torch.equal(result.eigenvectors, reference.eigenvectors)


def test_incomplete_store_and_other_runs_are_refused(tmp_path, matrix):
    path = tmp_path / "s"
    small = SlowDense(matrix[:120, :120].contiguous())
    measure(small, 10, store=path, progress=False, passes=[0], **{**KW, "block_size": 5})
    with pytest.raises(ValueError, match="pass 0: 2/2, pass 1: 0/2, pass 2: 0/2"):
        recover(path)
    with pytest.raises(StoreMismatchError) as err:
        seigh(small, 10, store=path, progress=False, recovery="hmt", block_size=5, power_iters=2)
    assert "power_iters: 1 (store) != 2 (this run)" in str(err.value)
    with pytest.raises(ValueError, match="out-of-core recovery is for recovery='singlepass'"):
        recover(path, memory_budget=10)
