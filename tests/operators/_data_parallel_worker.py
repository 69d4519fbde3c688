"""Worker of the 2-process data-parallel test (run by torchrun; not collected by pytest).

Every rank builds the same tiny float64 MLP and the same data, takes its shard through
:func:`curvsketch.operators.data_parallel_operator` (gloo), and runs the solvers in memory
exactly as one process would. Each rank writes what it computed, and the errors the
collective checks raised, to ``OUT/rank{r}.pt``. :func:`problem` and :func:`solve` are
also imported by the test to compute the one-process reference on all samples.

Usage: ``torchrun --standalone --nproc_per_node=2 _data_parallel_worker.py OUT``
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import curvsketch
from curvsketch.operators import DataParallelOperator, DenseOperator, count_targets

N, D_IN, CLASSES = 41, 6, 3


def problem() -> tuple[nn.Module, object, tuple[torch.Tensor, torch.Tensor], dict]:
    """The model, loss, all samples and operator options (identical on every rank)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D_IN, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh())
    model.append(nn.Linear(8, CLASSES))
    model = model.double()
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(N, D_IN, generator=gen, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (N,), generator=gen)
    y[:9] = -100  # ignored targets, all in rank 0's shard: unequal loss terms per rank

    def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, t, ignore_index=-100)

    options = {"num_loss_terms": count_targets(-100), "micro_batch_size": 8}
    return model, loss, (X, y), options


def solve(op: object) -> dict[str, torch.Tensor]:
    """The solvers whose results the test compares (all in memory, fixed seeds)."""
    krylov = curvsketch.seigh(op, 8, 48, recovery="krylov", block_size=8, seed=3, progress=False)
    hmt = curvsketch.seigh(op, 8, recovery="hmt", power_iters=1, seed=4, progress=False)
    xtrace = curvsketch.trace(op, 40, method="xtrace", seed=5)
    hutch = curvsketch.trace(op, 16, method="hutchinson", seed=6)
    density = curvsketch.spectral_density(op, num_probes=3, lanczos_steps=6, seed=7)
    nodes, weights = density.atoms()
    return {
        "krylov_values": krylov.eigenvalues,
        "krylov_vectors": krylov.eigenvectors,
        "hmt_values": hmt.eigenvalues,
        "hmt_vectors": hmt.eigenvectors,
        "trace_xtrace": torch.tensor([xtrace.value], dtype=torch.float64),
        "trace_hutchinson": torch.tensor([hutch.value], dtype=torch.float64),
        "density_nodes": nodes,
        "density_weights": weights,
        "gradient": op.gradient(),
    }


class _FailsOnRank1(DenseOperator):
    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        if torch.distributed.get_rank() == 1:
            raise FloatingPointError("deliberate failure on rank 1")
        return super()._matmat(x)


def _error(fn: object) -> str:
    try:
        fn()
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return "no error"


def main(out: Path) -> None:
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    torch.set_num_threads(1)
    model, loss, data, options = problem()
    op = curvsketch.operators.data_parallel_operator(model, loss, data, **options)
    result = solve(op)
    meta = {"local_terms": op.local_terms, "total_terms": op.total_terms, "weight": op.weight}

    # the collective checks: every rank must raise, none may hang
    x = torch.ones(op.shape[0], 2, dtype=torch.float64) * (1 + rank)
    errors = {"different_x": _error(lambda: op @ x)}
    wide = torch.ones(op.shape[0], 2 + rank, dtype=torch.float64)
    errors["different_width"] = _error(lambda: op @ wide)
    failing = DataParallelOperator(_FailsOnRank1(torch.eye(4, dtype=torch.float64)), terms=1)
    errors["local_failure"] = _error(lambda: failing @ torch.ones(4, 1, dtype=torch.float64))
    other = DenseOperator(torch.eye(4 + rank, dtype=torch.float64))
    errors["different_dim"] = _error(lambda: DataParallelOperator(other, terms=1))
    if rank == 1:
        with torch.no_grad():
            model[0].weight[0, 0] += 1.0
    errors["different_params"] = _error(
        lambda: curvsketch.operators.data_parallel_operator(model, loss, data, **options)
    )
    empty = (data[0][:1], data[1][:1])  # one sample: rank 1 has none
    errors["too_few_samples"] = _error(
        lambda: curvsketch.operators.data_parallel_operator(model, loss, empty, **options)
    )
    torch.save({"result": result, "meta": meta, "errors": errors}, out / f"rank{rank}.pt")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
