"""Dense test matrices with i.i.d. entries: Gaussian and Rademacher (Tropp et al. 2019).

Row ``i`` is drawn from its own generator seeded with ``hash(seed, stream, kind, i)`` (in
float64, then cast, so that float32 and float64 runs see the same matrix up to rounding).
Products generate rows in chunks of :data:`BLOCK_ELEMENTS` entries and multiply each chunk
with *all* columns of ``X`` at once, so ``Ω`` is generated once per call.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from curvsketch.sketch.noise.base import BLOCK_ELEMENTS, NoiseOperator, as_block, derive_seed

__all__ = ["BLOCK_ELEMENTS", "GaussianNoise", "RademacherNoise"]


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
