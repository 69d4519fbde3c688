"""Helpers of the stored krylov / hmt tests (also imported by their subprocess scripts)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from curvsketch.operators.protocol import DenseOperator

HERE = Path(__file__).resolve().parent


def spectrum_matrix(dim: int, seed: int = 0) -> torch.Tensor:
    """A symmetric indefinite float64 matrix with a decaying spectrum."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    values = torch.logspace(1, -3, dim, dtype=torch.float64)
    values[1::3] *= -1
    return (q * values) @ q.T


class SlowDense(DenseOperator):
    """A dense operator that sleeps ``delay`` seconds per call, counts its products and
    raises after ``fail_after`` products (an injected crash)."""

    def __init__(self, matrix: torch.Tensor, delay: float = 0.0, fail_after: int | None = None):
        super().__init__(matrix)
        self.delay, self.fail_after, self.columns = delay, fail_after, 0

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.columns + x.shape[1] > self.fail_after:
            raise RuntimeError("injected crash")
        if self.delay:
            time.sleep(self.delay)
        self.columns += x.shape[1]
        return super()._matmat(x)


def done_steps(store: Path) -> list[str]:
    d = store / "done"
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) if d.is_dir() else []


def kill_at(
    store: Path, settings: str, matrix: torch.Tensor, targets: list[int], seed: int
) -> list[int]:
    """Run ``seigh(op, **settings, store=store)`` in subprocesses on ``matrix`` (saved
    beside the store: rebuilt there it could round differently); SIGKILL each once
    ``target`` steps are committed plus a random moment. Returns the steps after each kill."""
    saved = store.parent / "matrix.pt"
    torch.save(matrix, saved)
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path.insert(0, {str(HERE)!r})
        from _stored_ops import SlowDense
        from curvsketch.sketch import seigh
        op = SlowDense(torch.load({str(saved)!r}), delay=0.03)
        seigh(op, store=sys.argv[1], progress=False, {settings})
        """
    )
    rng = random.Random(seed)
    after = []
    for target in targets:
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while len(done_steps(store)) < target and proc.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.04))  # a random moment inside a later block
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the kill: {proc.stderr.read().decode()}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        after.append(len(done_steps(store)))
    return after


def relative_difference(a, b) -> tuple[float, float]:
    """Max relative difference of eigenvalues and of sign-aligned eigenvectors."""
    values = float((a.eigenvalues - b.eigenvalues).abs().max() / b.eigenvalues.abs().max())
    u, v = a.eigenvectors, b.eigenvectors
    u = u * torch.sign((u * v).sum(0))
    return values, float((u - v).abs().max() / v.abs().max())


class one_thread:  # noqa: N801 (a context manager used like a function)
    """Run a block with one torch thread (bitwise comparisons: a multithreaded BLAS may
    split its work differently from call to call on a loaded machine)."""

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.threads)
