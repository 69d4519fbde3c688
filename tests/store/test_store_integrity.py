"""Recovery refuses done blocks whose data are damaged, naming them (issue 14.4).

A chunk file deleted (it would read as zeros), truncated, or overwritten with garbage
(non-finite) is reported with its block and product range, in memory and out of core;
after re-measuring as the message says, the result equals an uninterrupted run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from _store_ops import SlowDense, spectrum_matrix  # noqa: E402

from curvsketch.sketch import SYMMETRY_PRODUCTS, seigh  # noqa: E402
from curvsketch.sketch.stored import measure, recover  # noqa: E402
from curvsketch.store import MemoryStore, ZarrStore  # noqa: E402

DIM, OUTER, INNER, BLOCK = 120, 12, 30, 5  # 6 blocks; blocks 0-2 own Y columns
KW = {"block_size": BLOCK, "progress": False}
OUT_OF_CORE = 4 * OUTER * 8 * 40  # TSQR blocks of 40 rows


@pytest.fixture(scope="module")
def matrix() -> torch.Tensor:
    return spectrum_matrix(DIM, seed=2)


@pytest.fixture(scope="module")
def reference(matrix):
    return seigh(SlowDense(matrix), OUTER, INNER, **KW)


def _store(tmp_path: Path, matrix: torch.Tensor) -> Path:
    path = tmp_path / "s"
    measure(SlowDense(matrix), OUTER, INNER, store=path, **KW)
    return path


def _chunk(path: Path, name: str, block: int) -> Path:
    return path / name / "c" / "0" / str(block)


def _damage(chunk: Path, how: str) -> None:
    if how == "deleted":
        chunk.unlink()
    elif how == "truncated":
        chunk.write_bytes(chunk.read_bytes()[:100])
    else:  # garbage of the right size: 0xFF bytes are NaN in every float format
        chunk.write_bytes(b"\xff" * chunk.stat().st_size)


def _refused(path: Path, block: int, products: str, budget: int | None) -> ValueError:
    with pytest.raises(ValueError, match=rf"block {block} \(products {products}\)") as err:
        recover(path, memory_budget=budget)
    assert type(err.value).__name__ == "DamagedBlocksError"
    msg = str(err.value)
    assert f"b{block:06d}" in msg and "unmark_blocks" in msg and "measure" in msg
    return err.value


CASES = [
    ("Y", 1, "deleted", r"\[5, 10\)", "missing"),
    ("Y", 2, "truncated", r"\[10, 15\)", "100 bytes, expected"),
    ("Y", 0, "garbage", r"\[0, 5\)", "non-finite entries in Y"),
    ("Z", 4, "deleted", r"\[20, 25\)", "missing"),
    ("Z", 5, "garbage", r"\[25, 30\)", "non-finite entries in Z"),
]


@pytest.mark.parametrize("budget", [None, OUT_OF_CORE], ids=["in-memory", "out-of-core"])
@pytest.mark.parametrize(("name", "block", "how", "products", "why"), CASES)
def test_damaged_chunk_is_named_and_remeasured(
    tmp_path, matrix, reference, budget, name, block, how, products, why
) -> None:
    path = _store(tmp_path, matrix)
    _damage(_chunk(path, name, block), how)
    err = _refused(path, block, products, budget)
    assert why in str(err) and err.blocks == [block]
    # As the message says: delete the block's marker, then measure again (only that block).
    (path / "done" / f"b{block:06d}").unlink()
    op = SlowDense(matrix)
    widths: list[int] = []
    original = op._matmat
    op._matmat = lambda x: (widths.append(x.shape[1]), original(x))[1]
    measure(op, OUTER, INNER, store=path, **KW)
    assert widths == [SYMMETRY_PRODUCTS, BLOCK]  # the symmetry check, then that block
    res = recover(path, memory_budget=budget)
    if budget is None:
        assert torch.equal(res.eigenvalues, reference.eigenvalues)
        assert torch.equal(res.eigenvectors, reference.eigenvectors)
    else:
        scale = float(reference.eigenvalues.abs().max())
        assert float((res.eigenvalues - reference.eigenvalues).abs().max()) <= 1e-10 * scale


def test_every_damaged_block_is_named_and_unmark_blocks_remeasures(
    tmp_path, matrix, reference
) -> None:
    path = _store(tmp_path, matrix)
    _damage(_chunk(path, "Y", 0), "deleted")
    _damage(_chunk(path, "Z", 3), "truncated")
    err = _refused(path, 0, r"\[0, 5\)", None)
    assert err.blocks == [0, 3] and "block 3 (products [15, 20))" in str(err)
    st = ZarrStore(path)
    st.unmark_blocks(err.blocks)  # as the message says (binds to the stored run itself)
    assert st.missing_blocks() == [0, 3]
    res = seigh(SlowDense(matrix), OUTER, INNER, store=path, **KW)
    assert torch.equal(res.eigenvalues, reference.eigenvalues)


def test_memory_store_refuses_non_finite_block(matrix) -> None:
    st = measure(SlowDense(matrix), OUTER, INNER, store=MemoryStore(), **KW)
    st._y[7, 6] = np.inf  # column 6: block 1
    with pytest.raises(ValueError, match=r"block 1 \(products \[5, 10\)\).*1 non-finite"):
        recover(st)


def test_all_zero_block_is_written_and_accepted(tmp_path, matrix) -> None:
    """All-zero chunks are written (Zarr would skip them), so absence means damage."""
    path = _store(tmp_path, matrix)
    st = ZarrStore(path)
    st.bind(st.stored_identity())
    st.commit_block(1, np.zeros((DIM, BLOCK)), np.zeros((INNER, BLOCK)))
    assert _chunk(path, "Y", 1).is_file() and _chunk(path, "Z", 1).is_file()
    assert st.chunk_problems(st.done_blocks()) == {}
