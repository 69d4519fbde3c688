"""Fixtures for the sketch tests: synthetic symmetric matrices and a product counter."""

from __future__ import annotations

import pytest
import torch


class CountingOperator:
    """A dense matrix as an operator that counts products (columns) and calls."""

    def __init__(self, matrix: torch.Tensor, *, adjoint: bool = True) -> None:
        self.matrix = matrix
        self.shape = tuple(matrix.shape)
        self.dtype = matrix.dtype
        self.device = matrix.device
        self.products = 0
        self.adjoint_products = 0
        self.calls = 0
        self.widths: list[int] = []
        if not adjoint:
            self.rmatmul = None  # type: ignore[assignment]

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        width = 1 if x.ndim == 1 else x.shape[1]
        self.products += width
        self.calls += 1
        self.widths.append(width)
        return self.matrix @ x

    def rmatmul(self, x: torch.Tensor) -> torch.Tensor:
        width = 1 if x.ndim == 1 else x.shape[1]
        self.adjoint_products += width
        self.calls += 1
        self.widths.append(width)
        return self.matrix.T @ x


def _spectral(eigenvalues: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``H = U diag(λ) Uᵀ`` with a random orthogonal ``U`` (float64); returns ``(H, U)``."""
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    d = lam.shape[0]
    g = torch.Generator().manual_seed(1000 + seed)
    u, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    h = (u * lam) @ u.T
    return (h + h.T) / 2, u


def _sorted_by_magnitude(lam: torch.Tensor) -> torch.Tensor:
    return lam[torch.argsort(lam.abs(), descending=True, stable=True)]


def _random_signs(d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(2000 + seed)
    return torch.randint(0, 2, (d,), generator=g).double() * 2 - 1


@pytest.fixture
def spectral():
    """Factory: ``spectral(eigenvalues, seed=0) -> (H, U)``."""
    return _spectral


@pytest.fixture
def by_magnitude():
    """Sort eigenvalues by |λ| descending."""
    return _sorted_by_magnitude


@pytest.fixture
def random_signs():
    """Factory: ``random_signs(d, seed=0)`` → ±1 float64 vector."""
    return _random_signs


@pytest.fixture
def counting():
    """The :class:`CountingOperator` class."""
    return CountingOperator


@pytest.fixture(autouse=True)
def _one_thread():
    """Small problems: one intra-op thread avoids OpenMP spin-waits on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
