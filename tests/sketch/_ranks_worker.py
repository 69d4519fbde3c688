"""Worker of the 2-rank test of the stored / split recoveries (run by torchrun; not collected).

Every rank loads the same dense matrix (``OUT/matrix.pt``) and runs ``seigh`` for krylov and
hmt, in memory and into a Zarr store under ``OUT``; the columns of every block product are
split over the ranks (:mod:`curvsketch.sketch.ranks`). Then a collective
:class:`curvsketch.operators.DataParallelOperator` (a tiny MLP's Hessian, samples split
over the ranks) runs with ``store=`` for singlepass, krylov and hmt: every rank computes
every block, rank 0 writes. Each rank saves its results and product counts to
``OUT/rank{r}.pt``. :data:`RUNS`, :func:`problem` are imported by the test for the
one-process reference.

Usage: ``torchrun --standalone --nproc_per_node=2 _ranks_worker.py OUT``
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _stored_ops import SlowDense  # noqa: E402

RUNS = {
    "krylov": {"outer": 10, "inner": 60, "recovery": "krylov", "block_size": 6, "seed": 3},
    "krylov_sa": {
        "outer": 8,
        "inner": 50,
        "recovery": "krylov",
        "block_size": 5,  # 3 + 2 columns per rank
        "which": "SA",
    },
    "hmt": {"outer": 12, "recovery": "hmt", "power_iters": 1, "block_size": 5, "seed": 4},
    "hmt_la": {"outer": 8, "recovery": "hmt", "power_iters": 2, "block_size": 4, "which": "LA"},
}
COLLECTIVE_RUNS = {
    "dp_singlepass": {"outer": 6, "inner": 12, "block_size": 4},
    "dp_krylov": {"outer": 6, "inner": 24, "recovery": "krylov", "block_size": 4, "seed": 1},
    "dp_hmt": {"outer": 6, "recovery": "hmt", "power_iters": 1, "block_size": 4, "seed": 2},
}


def problem() -> tuple[nn.Module, object, tuple[torch.Tensor, torch.Tensor]]:
    """A tiny float64 MLP, its loss and 21 samples (identical on every rank)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(21, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (21,), generator=gen)
    return model, F.cross_entropy, (X, y)


def _pack(result) -> dict | None:
    if result is None:
        return None
    return {"values": result.eigenvalues, "vectors": result.eigenvectors}


def main(out: Path) -> None:
    import torch.distributed as dist

    from curvsketch.operators import data_parallel_operator
    from curvsketch.sketch import seigh

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    matrix = torch.load(out / "matrix.pt")
    saved: dict = {}
    for name, kw in RUNS.items():
        for where in ("memory", "store"):
            op = SlowDense(matrix)
            store = None if where == "memory" else out / f"{name}_store"
            result = seigh(op, progress=False, store=store, **kw)
            saved[f"{name}/{where}"] = {"result": _pack(result), "columns": op.columns}
    model, loss, data = problem()
    dp = data_parallel_operator(model, loss, data)
    for name, kw in COLLECTIVE_RUNS.items():
        before = dp.num_products
        result = seigh(dp, progress=False, store=out / f"{name}_store", **kw)
        saved[name] = {"result": _pack(result), "columns": dp.num_products - before}
    torch.save(saved, out / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
