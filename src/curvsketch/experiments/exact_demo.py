"""A small real job: train the paper's MNIST MLP, then its exact top Hessian eigenvalues.

This is the interim ``curvsketch demo`` until the full study pipeline lands: it shows the
operators end to end on real data (the bundled MNIST sample at 16x16, the paper's 7,030
parameter tanh MLP, plain SGD with lr 0.3 and batch 500) and prints the top eigenvalues of
the exact Hessian on 500 class-balanced held-out digits (``docs/paper.md`` §4).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from curvsketch.experiments.data import balanced_subset, mnist16
from curvsketch.experiments.models import paper_mlp
from curvsketch.experiments.training import train
from curvsketch.operators import dense_hessian

__all__ = ["ExactDemoResult", "run_exact_demo"]


@dataclass
class ExactDemoResult:
    """Top exact Hessian eigenvalues (by |λ|) at each analysed step, and timings."""

    steps: list[int]
    top_eigenvalues: dict[int, list[float]]
    test_accuracy: dict[int, float]
    seconds: dict[str, float] = field(default_factory=dict)


def run_exact_demo(
    steps: int = 300,
    checkpoints: tuple[int, ...] = (0, 100, 300),
    top: int = 10,
    progress: bool = True,
) -> ExactDemoResult:
    """Train the paper MLP and compute exact top-``top`` Hessian eigenvalues at checkpoints.

    Args:
        steps: SGD steps (lr 0.3, batch 500, as in the paper).
        checkpoints: steps at which to compute the Hessian (must be ≤ ``steps``).
        top: number of eigenvalues (largest |λ|) to report.
        progress: print training progress to stderr.

    Returns:
        An :class:`ExactDemoResult`.
    """
    t0 = time.perf_counter()
    data = mnist16()
    model = paper_mlp(seed=0)
    log = train(
        model,
        data.train,
        steps=steps,
        lr=0.3,
        batch_size=500,
        seed=0,
        checkpoint_steps=[c for c in checkpoints if c <= steps],
        eval_data=data.test,
        progress=progress,
    )
    t_train = time.perf_counter() - t0
    idx = balanced_subset(data.test.targets, per_class=50, seed=0)
    X, y = data.test.inputs[idx].double(), data.test.targets[idx]
    result = ExactDemoResult(steps=[], top_eigenvalues={}, test_accuracy={})
    t1 = time.perf_counter()
    for step in sorted(c for c in checkpoints if c <= steps):
        model.load_state_dict(log.state_dict(step))
        H = dense_hessian(model.double(), nn.functional.cross_entropy, (X, y), block_size=512)
        evals = torch.linalg.eigvalsh(H)
        order = evals.abs().argsort(descending=True)[:top]
        result.steps.append(step)
        result.top_eigenvalues[step] = evals[order].tolist()
        acc = dict(zip(log.eval_steps, log.eval_accuracies, strict=True))
        result.test_accuracy[step] = acc.get(step, float("nan"))
        model.float()
    result.seconds = {"train": t_train, "hessians": time.perf_counter() - t1}
    return result
