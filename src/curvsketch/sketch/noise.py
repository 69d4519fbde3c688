"""Random test operators addressable by ``(seed, index)``: Gaussian, Rademacher and SSRFT.

A *noise operator* represents an ``s × D`` random test matrix ``Ω`` whose rows are the test
vectors of a sketch (Tropp, Yurtsever, Udell, Cevher, "Streaming low-rank matrix
approximation with an application to scientific simulation", SIAM J. Sci. Comput. 41(4),
2019). It never stores ``Ω``: it hands out any block of rows ``Ω[i0:i1]``
(or the same vectors as columns) and the products ``Ω[i0:i1] @ X`` and
``Ω[i0:i1]ᵀ @ Y``.

Everything random is a function of ``(seed, stream, index)`` only, drawn on the CPU with a
``torch.Generator`` seeded from a hash of those values and then moved to the device. So
row ``i`` is the same whatever block it is requested in, on any device, in any process.
The ``stream`` names an independent test matrix under one user seed (e.g. ``"psi"`` and
``"phi"`` for the two matrices of a single-pass sketch).

* Gaussian / Rademacher: row ``i`` is drawn from its own generator seeded with
  ``hash(seed, stream, kind, i)`` (in float64, then cast, so that float32 and float64 runs
  see the same matrix up to rounding). Products generate rows in chunks and multiply each
  chunk with *all* columns of ``X`` at once, so ``Ω`` is generated once per call.
* SSRFT (:mod:`curvsketch.sketch.ssrft`): a subsampled scrambled DCT, O(D log D) per
  vector and no ``s × D`` storage.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import ClassVar

import torch

__all__ = [
    "BLOCK_ELEMENTS",
    "NOISE_KINDS",
    "GaussianNoise",
    "NoiseOperator",
    "RademacherNoise",
    "derive_seed",
    "make_noise",
]

#: Random streams of SEIGH's test operators: Ψ (the products), Φ (the inner sketch) and
#: the independent outer sketch Ω of ``recovery="tropp"``. One definition for every caller
#: (in-memory ``seigh`` and the store), so that equal seeds give equal test vectors.
STREAM_PSI = "seigh.psi"
STREAM_PHI = "seigh.phi"
STREAM_OMEGA = "seigh.omega"

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


class _DenseNoise(NoiseOperator):
    """Test matrices with i.i.d. entries; row ``i`` has its own generator."""

    @abstractmethod
    def _draw(self, out: torch.Tensor, generator: torch.Generator) -> None:
        """Fill the float64 vector ``out`` (length D) with one row's entries."""

    def _row_seed(self, index: int) -> int:
        return derive_seed(self.seed, self.stream, self.kind, index)

    def _rows_cpu64(self, start: int, stop: int) -> torch.Tensor:
        out = torch.empty((stop - start, self.dim), dtype=torch.float64)
        gen = torch.Generator()
        for j, i in enumerate(range(start, stop)):  # one generator per test vector
            gen.manual_seed(self._row_seed(i))
            self._draw(out[j], gen)
        return out

    def columns(
        self,
        start: int = 0,
        stop: int | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        start, stop = self._range(start, stop)
        return self._rows_cpu64(start, stop).to(dtype=dtype, device=device).T

    def _chunks(self, start: int, stop: int) -> range:
        return range(start, stop, max(1, BLOCK_ELEMENTS // self.dim))

    def matmul(
        self,
        x: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
        *,
        block_size: int | None = None,
    ) -> torch.Tensor:
        start, stop = self._range(start, stop)
        block, vector = as_block(x, self.dim, f"{type(self).__name__}.matmul")
        out = torch.empty((stop - start, block.shape[1]), dtype=block.dtype, device=block.device)
        step = max(1, BLOCK_ELEMENTS // self.dim)
        for r0 in self._chunks(start, stop):
            r1 = min(r0 + step, stop)
            rows = self._rows_cpu64(r0, r1).to(dtype=block.dtype, device=block.device)
            out[r0 - start : r1 - start] = rows @ block
        return out[:, 0] if vector else out

    def rmatmul(
        self,
        y: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
        *,
        block_size: int | None = None,
    ) -> torch.Tensor:
        start, stop = self._range(start, stop)
        block, vector = as_block(y, stop - start, f"{type(self).__name__}.rmatmul")
        out = torch.zeros((self.dim, block.shape[1]), dtype=block.dtype, device=block.device)
        step = max(1, BLOCK_ELEMENTS // self.dim)
        for r0 in self._chunks(start, stop):
            r1 = min(r0 + step, stop)
            rows = self._rows_cpu64(r0, r1).to(dtype=block.dtype, device=block.device)
            out.addmm_(rows.T, block[r0 - start : r1 - start])
        return out[:, 0] if vector else out


class GaussianNoise(_DenseNoise):
    """Test matrix with i.i.d. standard normal entries (Tropp et al. 2019)."""

    kind = "gaussian"

    def _draw(self, out: torch.Tensor, generator: torch.Generator) -> None:
        torch.randn(out.shape, generator=generator, dtype=torch.float64, out=out)


class RademacherNoise(_DenseNoise):
    """Test matrix with i.i.d. random signs ±1 (Tropp et al. 2019)."""

    kind = "rademacher"

    def _draw(self, out: torch.Tensor, generator: torch.Generator) -> None:
        bits = torch.randint(0, 2, out.shape, generator=generator, dtype=torch.int64)
        out.copy_(bits).mul_(2).sub_(1)


#: Names accepted by :func:`make_noise` (and the ``noise=`` argument of the sketches).
NOISE_KINDS = ("gaussian", "rademacher", "ssrft")


def make_noise(
    kind: str, num_rows: int, dim: int, seed: int = 0, stream: str = "omega"
) -> NoiseOperator:
    """Build a test operator by name.

    Args:
        kind: ``"gaussian"``, ``"rademacher"`` or ``"ssrft"``.
        num_rows: ``s``, the number of test vectors.
        dim: ``D``, their length.
        seed: user seed.
        stream: name of the independent matrix under ``seed`` (e.g. ``"psi"``, ``"phi"``).

    Returns:
        The :class:`NoiseOperator`.

    Raises:
        ValueError: unknown ``kind``, or bad sizes.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise={kind!r} is not one of {list(NOISE_KINDS)}; pick one of them")
    if kind == "ssrft":
        from curvsketch.sketch.ssrft import SSRFTNoise  # ssrft.py builds on this module

        return SSRFTNoise(num_rows, dim, seed, stream)
    dense: type[NoiseOperator] = GaussianNoise if kind == "gaussian" else RademacherNoise
    return dense(num_rows, dim, seed, stream)
