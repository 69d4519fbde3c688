"""Helpers shared by the analysis tests: random bases, one-hot masks, a factored basis."""

from __future__ import annotations

import math

import torch

F64 = torch.float64


def rand_orth(D: int, k: int, seed: int) -> torch.Tensor:
    """Orthonormal D×k basis of a Haar-random subspace (QR of a Gaussian)."""
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(D, k, generator=g, dtype=F64)).Q


def rand_rotation(k: int, seed: int) -> torch.Tensor:
    """Random k×k orthogonal matrix."""
    return rand_orth(k, k, seed + 10_000)


def rand_mask(D: int, k: int, seed: int) -> torch.Tensor:
    """Random k-subset of range(D), in random order."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(D, generator=g)[:k]


def one_hot(mask: torch.Tensor, D: int) -> torch.Tensor:
    """The dense D×k matrix with columns e_{mask[j]}."""
    M = torch.zeros(D, mask.numel(), dtype=F64)
    M[mask, torch.arange(mask.numel())] = 1.0
    return M


class Factored:
    """Eigenvectors Q @ V exposed only through .shape and .rows (counts the rows read)."""

    def __init__(self, Q: torch.Tensor, V: torch.Tensor | None = None) -> None:
        self.Q = Q
        self.V = torch.eye(Q.shape[1], dtype=Q.dtype) if V is None else V
        self.shape = (Q.shape[0], self.V.shape[1])
        self.rows_read = 0
        self.calls = 0

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        self.rows_read += index.numel()
        self.calls += 1
        return self.Q[index] @ self.V

    def dense(self) -> torch.Tensor:
        return self.Q @ self.V


def factored_orth(D: int, o: int, seed: int) -> Factored:
    """A factored orthonormal basis Q V with Q orthonormal D×o and V orthogonal o×o."""
    return Factored(rand_orth(D, o, seed), rand_rotation(o, seed))


def reference_metrics(A: torch.Tensor, B: torch.Tensor) -> dict[str, float]:
    """Dense float64 reference from the SVD of AᵀB and the D×D projectors (small D only)."""
    k = min(A.shape[1], B.shape[1])
    cos = torch.linalg.svdvals(A.T @ B)[:k].clamp(0, 1)
    th = torch.arccos(cos)
    chord = 2 * torch.sin(th / 2)
    out = {
        "geodesic": float(th.norm()),
        "chordal_2": float(chord.max()),
        "chordal_f": float(chord.norm()),
        "projection_2": float(torch.sin(th).max()),
        "projection_f": float(torch.sin(th).norm()),
        "fubini_study": float(torch.arccos(cos.prod().clamp(0, 1))),
        "overlap": float((A.T @ B).square().sum()) / k,
    }
    if A.shape[1] == B.shape[1]:
        P = A @ A.T - B @ B.T
        out["projection_2"] = float(torch.linalg.matrix_norm(P, 2))
        out["projection_f"] = float(torch.linalg.matrix_norm(P, "fro")) / math.sqrt(2)
        out["fubini_study"] = float(torch.arccos(torch.linalg.det(A.T @ B).abs().clamp(0, 1)))
    return out
