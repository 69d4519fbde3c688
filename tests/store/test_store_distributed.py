"""Workers split the blocks: explicit worker/num_workers, and torchrun (gloo, CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from _store_ops import SlowDense, spectrum_matrix  # noqa: E402

from curvsketch.sketch import EighResult, seigh  # noqa: E402
from curvsketch.sketch.stored import distributed_worker, measure, recover  # noqa: E402

DIM, OUTER, INNER, BLOCK = 300, 30, 70, 10  # 7 blocks: uneven split over 2 workers


@pytest.fixture(scope="module")
def matrix() -> torch.Tensor:
    return spectrum_matrix(DIM, seed=3)


@pytest.fixture(scope="module")
def reference(matrix) -> EighResult:
    return seigh(SlowDense(matrix), OUTER, INNER, block_size=BLOCK, progress=False)


def _close(a: EighResult, b: EighResult) -> None:
    scale = float(b.eigenvalues.abs().max())
    assert float((a.eigenvalues - b.eigenvalues).abs().max()) <= 1e-10 * scale
    diff = (a.eigenvectors.abs() - b.eigenvectors.abs()).abs().max()
    assert float(diff) <= 1e-10


def test_workers_split_blocks_then_recover(tmp_path, matrix, reference) -> None:
    path = tmp_path / "s"
    kw = {"store": path, "block_size": BLOCK, "progress": False}
    st = measure(SlowDense(matrix), OUTER, INNER, worker=1, num_workers=2, **kw)
    assert st.done_blocks() == {1, 3, 5}
    with pytest.raises(ValueError, match="4 of 7 blocks are missing"):
        recover(path)
    st = measure(SlowDense(matrix), OUTER, INNER, worker=0, num_workers=2, **kw)
    assert st.is_complete()
    _close(recover(path), reference)
    assert torch.equal(recover(path).eigenvalues, reference.eigenvalues)


def test_worker_arguments_are_checked() -> None:
    assert distributed_worker(None, None) == (0, 1, False)
    with pytest.raises(ValueError, match="give both"):
        distributed_worker(0, None)
    with pytest.raises(ValueError, match=r"worker must be an integer in \[0, 2\)"):
        distributed_worker(2, 2)


def test_recover_without_store_says_what_to_do(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="run measure"):
        recover(tmp_path / "nothing")


TORCHRUN_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch.distributed as dist
    sys.path.insert(0, {here!r})
    from _store_ops import SlowDense, spectrum_matrix
    from curvsketch.sketch import seigh
    dist.init_process_group("gloo")
    op = SlowDense(spectrum_matrix({dim}, seed=3))
    result = seigh(op, {outer}, {inner}, block_size={block}, store=sys.argv[1], progress=False)
    rank = dist.get_rank()
    assert (result is None) == (rank != 0), (rank, result)
    if rank == 0:
        result.save(sys.argv[2])
    dist.destroy_process_group()
    """
).format(here=str(HERE), dim=DIM, outer=OUTER, inner=INNER, block=BLOCK)


def test_torchrun_two_ranks_equal_single_process(tmp_path, reference) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not found next to the Python interpreter")
    script = tmp_path / "run.py"
    script.write_text(TORCHRUN_SCRIPT)
    out = tmp_path / "result.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node=2",
            "--standalone",
            str(script),
            str(tmp_path / "store"),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = sorted(p.name for p in (tmp_path / "store" / "done").iterdir())
    assert len(done) == INNER // BLOCK
    _close(EighResult.load(out), reference)
