"""Resume after SIGKILL, refusal of other runs, atomic blocks, in-memory store."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from _store_ops import SlowDense, spectrum_matrix  # noqa: E402

from curvsketch.sketch import SYMMETRY_PRODUCTS, seigh  # noqa: E402
from curvsketch.store import (  # noqa: E402
    MemoryStore,
    StoreMismatchError,
    ZarrStore,
    fingerprint,
)

DIM, OUTER, INNER, BLOCK = 600, 60, 200, 10
SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from _store_ops import SlowDense, spectrum_matrix
    from curvsketch.sketch import seigh
    op = SlowDense(spectrum_matrix({dim}), delay=0.05)
    seigh(op, {outer}, {inner}, block_size={block}, store=sys.argv[1], progress=False)
    """
).format(here=str(HERE), dim=DIM, outer=OUTER, inner=INNER, block=BLOCK)


@pytest.fixture(scope="module")
def matrix() -> torch.Tensor:
    return spectrum_matrix(DIM)


@pytest.fixture(scope="module")
def reference(matrix):
    return seigh(SlowDense(matrix), OUTER, INNER, block_size=BLOCK, progress=False)


def _done(path: Path) -> int:
    d = path / "done"
    return len([p for p in d.iterdir() if p.name.startswith("b")]) if d.is_dir() else 0


def _assert_same(result, reference) -> None:
    ref = reference.eigenvalues
    assert torch.allclose(result.eigenvalues, ref, rtol=1e-10, atol=1e-10 * float(ref.abs().max()))
    u, v = result.eigenvectors, reference.eigenvectors
    assert float((u.abs() - v.abs()).abs().max()) <= 1e-10 * float(v.abs().max()) + 1e-12


def test_resume_after_sigkill_matches_uninterrupted(tmp_path, matrix, reference) -> None:
    store = tmp_path / "store"
    rng = random.Random(1234)
    num_blocks = INNER // BLOCK
    for target in (2, 8, 14):
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while _done(store) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.05))  # a random moment inside the next block
        if proc.poll() is not None:
            pytest.fail(f"measurement process ended early: {proc.stderr.read().decode()}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        assert 0 < _done(store) < num_blocks
    before = _done(store)
    calls = []
    op = SlowDense(matrix)
    original = op._matmat
    op._matmat = lambda x: (calls.append(x.shape[1]), original(x))[1]
    resumed = seigh(op, OUTER, INNER, block_size=BLOCK, store=store, progress=False)
    # only missing blocks were measured (besides seigh's symmetry check)
    assert sum(calls) == (num_blocks - before) * BLOCK + SYMMETRY_PRODUCTS
    _assert_same(resumed, reference)


def test_in_memory_store_equals_no_store(matrix, reference) -> None:
    st = MemoryStore()
    result = seigh(SlowDense(matrix), OUTER, INNER, block_size=BLOCK, store=st, progress=False)
    assert torch.equal(result.eigenvalues, reference.eigenvalues)
    assert torch.equal(result.eigenvectors, reference.eigenvectors)
    assert st.is_complete()


def test_disk_store_reuses_blocks_bitwise(tmp_path, matrix, reference) -> None:
    path = tmp_path / "s"
    first = seigh(SlowDense(matrix), OUTER, INNER, block_size=BLOCK, store=path, progress=False)
    assert torch.equal(first.eigenvalues, reference.eigenvalues)
    op = SlowDense(matrix)
    op._matmat = None  # any product would fail: everything must come from the store
    again = seigh(
        op, OUTER, INNER, block_size=BLOCK, store=path, progress=False, check_symmetry=False
    )
    assert torch.equal(again.eigenvalues, first.eigenvalues)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seed": 1}, "seed"),
        ({"other_matrix": True}, "operator.matrix"),
        ({"inner": 180}, "inner"),
        ({"block_size": 20}, "block_size"),
    ],
)
def test_store_of_another_run_is_refused(tmp_path, matrix, change, field) -> None:
    path = tmp_path / "s"
    small = SlowDense(matrix[:200, :200].contiguous())
    seigh(small, 30, 60, block_size=BLOCK, store=path, progress=False)
    op = SlowDense(spectrum_matrix(200, seed=7)) if change.get("other_matrix") else small
    kw = {"seed": change.get("seed", 0), "block_size": change.get("block_size", BLOCK)}
    inner = change.get("inner", 60)
    with pytest.raises(StoreMismatchError) as err:
        seigh(op, 30, inner, store=path, progress=False, **kw)
    msg = str(err.value)
    assert field in msg and str(path) in msg
    assert "another store path" in msg and "delete" in msg


def test_block_without_marker_is_recomputed(tmp_path, matrix, reference) -> None:
    path = tmp_path / "s"
    seigh(SlowDense(matrix), OUTER, INNER, block_size=BLOCK, store=path, progress=False)
    st = ZarrStore(path)
    st.bind(st.stored_identity())
    # Simulate a crash between writing block 3's chunks and its marker: garbage data, no mark.
    y = st.group["Y"]
    y[:, 30:40] = np.full((DIM, 10), 1e30)
    (path / "done" / "b000003").unlink()
    assert 3 in st.missing_blocks()
    calls = []
    op = SlowDense(matrix)
    original = op._matmat
    op._matmat = lambda x: (calls.append(x.shape[1]), original(x))[1]
    result = seigh(op, OUTER, INNER, block_size=BLOCK, store=path, progress=False)
    assert calls == [SYMMETRY_PRODUCTS, BLOCK]  # seigh's symmetry check, then block 3
    _assert_same(result, reference)


def test_store_refuses_non_singlepass_and_foreign_paths(tmp_path, matrix) -> None:
    op = SlowDense(matrix[:100, :100].contiguous())
    with pytest.raises(ValueError, match="recovery='singlepass', 'krylov' or 'hmt'"):
        seigh(op, 10, recovery="nystrom", store=tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="needs store=PATH"):
        seigh(op, 10, memory_budget=10, progress=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "something.txt").write_text("x")
    with pytest.raises(ValueError, match="not a curvsketch measurement store"):
        seigh(op, 10, store=tmp_path / "b", progress=False)


def test_fingerprint_fields(matrix) -> None:
    fp = fingerprint(SlowDense(matrix[:50, :50].contiguous()))
    assert fp["dim"] == 50 and fp["dtype"] == "float64" and fp["matrix"]
    assert fp["params"] is None and fp["data"] is None


def test_fingerprint_of_curvature_operator_hashes_params_and_data() -> None:
    from curvsketch.operators import HessianOperator

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2)).double()
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
    op = HessianOperator(model, torch.nn.functional.cross_entropy, (x, y))
    fp = fingerprint(op)
    assert fp["params"] and fp["data"] and fp["dim"] == 8
    op2 = HessianOperator(model, torch.nn.functional.cross_entropy, (x + 1, y))
    assert fingerprint(op2)["data"] != fp["data"]
    with torch.no_grad():
        model[0].bias.add_(1.0)
    assert fingerprint(op)["params"] != fp["params"]


def test_progress_counts_reused_blocks(matrix, capsys) -> None:
    from curvsketch.sketch.stored import measure

    op = SlowDense(matrix[:100, :100].contiguous())
    st = MemoryStore()
    measure(op, 10, 30, store=st, block_size=10, worker=0, num_workers=2, progress=False)
    assert st.done_blocks() == {0, 2}
    seigh(op, 10, 30, block_size=10, store=st, progress=True)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("seigh[singlepass] blocks: 3/3 (100%)"), last
