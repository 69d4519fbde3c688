"""The base of the test operators: :class:`NoiseOperator` and the seeding by ``(seed, stream)``.

A *noise operator* represents an ``s × D`` random test matrix ``Ω`` whose rows are the test
vectors of a sketch (Tropp, Yurtsever, Udell, Cevher, "Streaming low-rank matrix
approximation with an application to scientific simulation", SIAM J. Sci. Comput. 41(4),
2019). It never stores ``Ω``: it hands out any block of rows ``Ω[i0:i1]``
(or the same vectors as columns) and the products ``Ω[i0:i1] @ X`` and
``Ω[i0:i1]ᵀ @ Y``. Everything random is a function of ``(seed, stream, index)`` only
(:func:`derive_seed`).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import ClassVar

import torch

__all__ = ["BLOCK_ELEMENTS", "NoiseOperator", "as_block", "check_int", "derive_seed"]

#: Elements of the largest temporary block (rows of a dense test matrix, or columns of an
#: SSRFT input times ``D``) that one step of a product materialises.
BLOCK_ELEMENTS = 2**25


def derive_seed(*parts: int | str) -> int:
    """Hash integers and strings into a 63-bit generator seed, stably across processes.

    Args:
        parts: the values that identify a random object, e.g. ``(seed, "psi", "ssrft", D)``.

    Returns:
        A non-negative integer below ``2**63``.
    """
    text = "\x1f".join(f"{type(p).__name__}:{p}" for p in parts)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def as_block(x: torch.Tensor, n: int, who: str) -> tuple[torch.Tensor, bool]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim not in (1, 2) or x.shape[0] != n:
        raise ValueError(f"{who}: expected shape ({n},) or ({n}, m), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{who}: expected a real floating tensor, got dtype {x.dtype}")
    return (x.unsqueeze(1), True) if x.ndim == 1 else (x, False)


class NoiseOperator(ABC):
    """An ``s × D`` random test matrix, reproducible from ``(seed, stream, index)``.

    Args:
        num_rows: ``s``, the number of test vectors (rows).
        dim: ``D``, the length of each test vector.
        seed: user seed.
        stream: name of this matrix under ``seed`` (independent streams, same seed).

    Attributes:
        kind: ``"gaussian"``, ``"rademacher"`` or ``"ssrft"``.
    """

    kind: ClassVar[str] = ""

    def __init__(self, num_rows: int, dim: int, seed: int = 0, stream: str = "omega") -> None:
        self.num_rows = check_int("num_rows", num_rows, 1)
        self.dim = check_int("dim", dim, 1)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self.stream = str(stream)

    @property
    def shape(self) -> tuple[int, int]:
        """``(s, D)``."""
        return (self.num_rows, self.dim)

    def _range(self, start: int, stop: int | None) -> tuple[int, int]:
        stop = self.num_rows if stop is None else stop
        if not 0 <= start <= stop <= self.num_rows:
            raise IndexError(
                f"{type(self).__name__}: row range [{start}, {stop}) is outside "
                f"[0, {self.num_rows})"
            )
        return start, stop

    def rows(
        self,
        start: int = 0,
        stop: int | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Return the test vectors ``Ω[start:stop]`` as rows, shape ``(stop - start, D)``."""
        return self.columns(start, stop, dtype=dtype, device=device).T

    @abstractmethod
    def columns(
        self,
        start: int = 0,
        stop: int | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Return the test vectors ``Ω[start:stop]ᵀ`` as columns, shape ``(D, stop - start)``.

        The result may be a transposed (non-contiguous) view.
        """

    @abstractmethod
    def matmul(
        self,
        x: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
        *,
        block_size: int | None = None,
    ) -> torch.Tensor:
        """Return ``Ω[start:stop] @ x`` for ``x`` of shape ``(D,)`` or ``(D, m)``.

        Args:
            x: real tensor; the result has its dtype and device.
            start: first row of ``Ω``.
            stop: one past the last row (default ``s``).
            block_size: SSRFT only: columns of ``x`` transformed at a time (default: as
                many as fit in :data:`BLOCK_ELEMENTS`).

        Returns:
            Tensor of shape ``(stop - start,)`` or ``(stop - start, m)``.
        """

    @abstractmethod
    def rmatmul(
        self,
        y: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
        *,
        block_size: int | None = None,
    ) -> torch.Tensor:
        """Return ``Ω[start:stop]ᵀ @ y`` for ``y`` of shape ``(stop - start,)`` or ``(·, m)``.

        Returns:
            Tensor of shape ``(D,)`` or ``(D, m)`` with ``y``'s dtype and device.
        """

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return self.matmul(x)

    def to_dense(
        self, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """The whole ``s × D`` matrix (for tests and small problems)."""
        return self.rows(0, self.num_rows, dtype=dtype, device=device).contiguous()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_rows={self.num_rows}, dim={self.dim}, "
            f"seed={self.seed}, stream={self.stream!r})"
        )
