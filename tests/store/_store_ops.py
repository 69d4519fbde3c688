"""Synthetic float64 operators for the store tests (also imported by subprocess scripts)."""

from __future__ import annotations

import time

import torch

from curvsketch.operators.protocol import DenseOperator, LinearOperator


def spectrum_matrix(dim: int, seed: int = 0) -> torch.Tensor:
    """A symmetric indefinite ``dim × dim`` float64 matrix with a decaying spectrum."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    values = torch.logspace(2, -4, dim, dtype=torch.float64)
    values[1::3] *= -1
    return (q * values) @ q.T


class SlowDense(DenseOperator):
    """A dense operator that sleeps ``delay`` seconds per product block."""

    def __init__(self, matrix: torch.Tensor, delay: float = 0.0) -> None:
        super().__init__(matrix)
        self.delay = delay

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        return super()._matmat(x)


class LowRankPlusDiagonal(LinearOperator):
    """``H = U diag(λ) Uᵀ + εI`` without forming ``D × D`` (memory ``D·r``)."""

    def __init__(self, dim: int, rank: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.u = torch.randn(dim, rank, generator=g, dtype=torch.float64) / dim**0.5
        self.values = torch.linspace(10.0, 1.0, rank, dtype=torch.float64)
        self.shape = (dim, dim)
        self.dtype = torch.float64
        self.device = torch.device("cpu")

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        return self.u @ (self.values[:, None] * (self.u.T @ x)) + 1e-3 * x

    def _rmatmat(self, x: torch.Tensor) -> torch.Tensor:
        return self._matmat(x)
