"""recovery="krylov" into a store: kill -9 and resume, injected crashes, refused stores."""

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
from curvsketch.sketch.stored import measure, recover  # noqa: E402
from curvsketch.store import MemoryStepStore, StoreMismatchError, ZarrStepStore  # noqa: E402

DIM, OUTER, INNER, BLOCK = 400, 20, 120, 5  # 24 Krylov blocks
KW = {"recovery": "krylov", "block_size": BLOCK}
BLOCKS = INNER // BLOCK


@pytest.fixture(scope="module")
def matrix() -> torch.Tensor:
    return spectrum_matrix(DIM)


@pytest.fixture(scope="module")
def reference(matrix):
    return seigh(SlowDense(matrix), OUTER, INNER, progress=False, **KW)


def test_kill_nine_three_times_then_resume_equals_uninterrupted(tmp_path, matrix, reference):
    store = tmp_path / "store"
    settings = f"outer={OUTER}, inner={INNER}, recovery='krylov', block_size={BLOCK}"
    after = kill_at(store, settings, matrix, [3, 10, 17], seed=11)
    assert after == sorted(after) and after[0] >= 3 and after[-1] < BLOCKS, after
    steps = done_steps(store)
    assert steps == [f"k{j:06d}" for j in range(len(steps))]  # a committed prefix
    op = SlowDense(matrix)
    resumed = seigh(op, OUTER, INNER, store=store, progress=False, **KW)
    missing = BLOCKS - len(steps)
    assert op.columns == SYMMETRY_PRODUCTS + missing * BLOCK  # only missing blocks
    values, vectors = relative_difference(resumed, reference)
    print(
        f"krylov kill -9 x3: after kills {after}, recomputed {missing} of {BLOCKS} blocks, "
        f"max rel diff eigenvalues {values:.1e}, eigenvectors {vectors:.1e}"
    )
    assert values <= 1e-10 and vectors <= 1e-10, (values, vectors)


@pytest.mark.parametrize("crash_after", [1, 9, BLOCKS - 1])
def test_injected_crash_then_resume_is_bitwise(tmp_path, matrix, crash_after):
    store = tmp_path / "s"
    with one_thread():
        reference = seigh(SlowDense(matrix), OUTER, INNER, progress=False, **KW)
        op = SlowDense(matrix, fail_after=SYMMETRY_PRODUCTS + crash_after * BLOCK)
        with pytest.raises(RuntimeError, match="injected crash"):
            seigh(op, OUTER, INNER, store=store, progress=False, **KW)
        assert len(done_steps(store)) == crash_after
        op = SlowDense(matrix)
        resumed = seigh(op, OUTER, INNER, store=store, progress=False, **KW)
        stored = recover(store)
    assert op.columns == SYMMETRY_PRODUCTS + (BLOCKS - crash_after) * BLOCK
    assert torch.equal(resumed.eigenvalues, reference.eigenvalues)
    assert torch.equal(resumed.eigenvectors, reference.eigenvectors)
    assert torch.equal(stored.eigenvectors, reference.eigenvectors)


def test_memory_store_and_measure_then_recover(matrix):
    st = MemoryStepStore()
    with one_thread():
        reference = seigh(SlowDense(matrix), OUTER, INNER, progress=False, **KW)
        result = seigh(SlowDense(matrix), OUTER, INNER, store=st, progress=False, **KW)
        first = st.measured
        again = measure(SlowDense(matrix), OUTER, INNER, store=st, progress=False, **KW)
        out = recover(st)
    assert torch.equal(result.eigenvectors, reference.eigenvectors)
    assert (first, st.measured, len(st.done_steps())) == (BLOCKS, 0, BLOCKS)
    assert again is st
    assert torch.equal(out.eigenvalues, reference.eigenvalues)
    assert out.recovery == "krylov" and out.num_products == INNER


def test_which_sa_resumes(tmp_path, matrix):
    kw = {**KW, "which": "SA"}
    with one_thread():
        ref = seigh(SlowDense(matrix), OUTER, INNER, progress=False, **kw)
        with pytest.raises(RuntimeError):
            op = SlowDense(matrix, fail_after=40)
            seigh(op, OUTER, INNER, store=tmp_path / "s", progress=False, **kw)
        out = seigh(SlowDense(matrix), OUTER, INNER, store=tmp_path / "s", progress=False, **kw)
    assert torch.equal(out.eigenvalues, ref.eigenvalues) and out.which == "SA"


def test_store_of_another_run_is_refused_naming_every_field(tmp_path, matrix):
    path = tmp_path / "s"
    small = SlowDense(matrix[:100, :100].contiguous())
    seigh(small, 10, 40, store=path, progress=False, **KW)
    with pytest.raises(StoreMismatchError) as err:
        seigh(
            small, 10, 40, store=path, progress=False, recovery="krylov", block_size=4, which="LA"
        )
    msg = str(err.value)
    assert "block_size: 5 (store) != 4 (this run)" in msg and "which: 'LM'" in msg
    with pytest.raises(StoreMismatchError, match="recovery: 'krylov' \\(store\\) != 'singlepass'"):
        seigh(small, 10, 40, store=path, progress=False)
    with pytest.raises(StoreMismatchError, match="power_iters"):
        seigh(small, 10, store=path, progress=False, recovery="hmt", power_iters=1, block_size=5)
    sp = tmp_path / "sp"
    seigh(small, 10, 40, store=sp, progress=False)  # a single-pass store
    with pytest.raises(StoreMismatchError, match="recovery: 'singlepass' \\(store\\) != 'krylov'"):
        seigh(small, 10, 40, store=sp, progress=False, **KW)
    assert ZarrStepStore(path).peek_identity().recovery == "krylov"


def test_recover_of_an_incomplete_store_says_how_many(tmp_path, matrix):
    path = tmp_path / "s"
    with pytest.raises(RuntimeError):
        seigh(
            SlowDense(matrix, fail_after=2 + 3 * BLOCK),
            OUTER,
            INNER,
            store=path,
            progress=False,
            **KW,
        )
    with pytest.raises(ValueError, match=f"{BLOCKS - 3} of {BLOCKS} Krylov blocks are missing"):
        recover(path)
    with pytest.raises(ValueError, match="sequential"):
        measure(SlowDense(matrix), OUTER, INNER, store=path, worker=0, num_workers=2, **KW)
