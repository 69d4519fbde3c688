"""SSRFT test operator: a subsampled scrambled real trigonometric transform.

``Ω = R·F·Π·F·Π′`` (Tropp, Yurtsever, Udell, Cevher, "Streaming low-rank matrix
approximation with an application to scientific simulation", SIAM J. Sci. Comput. 41(4),
2019; after Woolfe, Liberty, Rokhlin, Tygert, "A fast randomized algorithm for the
approximation of matrices", ACHA 25(3), 2008): ``Π, Π′`` random permutations with random
±1 signs, ``F`` the orthonormal DCT-II (:mod:`curvsketch.sketch.dct`), ``R`` the first
``s`` entries of a random permutation of ``0..D-1``. The permutations and signs depend on
``(seed, stream, D)`` only and are drawn on the CPU, so row ``i`` is fixed by
``(seed, stream, i)`` on every device. Products cost O(D log D) per column and are
computed for a block of columns at once (batched FFT over ``block_size`` columns); nothing
of size ``s × D`` is ever stored.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from curvsketch.sketch.dct import (
    dct_row_coefficients,
    folded_coefficients,
    folded_dct,
    gather_dct_rows,
    idct_coefficients,
    inverse_spectrum,
    makhoul_order,
)
from curvsketch.sketch.noise.base import (
    BLOCK_ELEMENTS,
    NoiseOperator,
    as_block,
    check_int,
    derive_seed,
)

__all__ = ["SSRFTNoise"]


class SSRFTNoise(NoiseOperator):
    """Subsampled scrambled DCT ``Ω = R·F·Π·F·Π′`` (Tropp et al. 2019).

    Rows are orthonormal (``Ω Ωᵀ = I_s``); requires ``s ≤ D``. The signed permutations and
    the DCT's reorderings are folded into precomputed gather tables, so one product costs
    two batched real FFTs plus a few memory passes per block of columns.
    """

    kind = "ssrft"
    #: Test vectors are formed in aligned groups of this many, always with the same batch
    #: layout, so that row ``i`` is bitwise the same whatever block it is requested in.
    ROW_GROUP: ClassVar[int] = 16

    def __init__(self, num_rows: int, dim: int, seed: int = 0, stream: str = "omega") -> None:
        super().__init__(num_rows, dim, seed, stream)
        if num_rows > dim:
            raise ValueError(
                f"SSRFTNoise: num_rows={num_rows} exceeds dim={dim}; an SSRFT has at most D "
                "orthonormal rows: use at most D test vectors or noise='gaussian'"
            )
        n = dim
        gen = torch.Generator().manual_seed(derive_seed(seed, self.stream, self.kind, n))
        perm_a = torch.randperm(n, generator=gen)
        sign_a = torch.randint(0, 2, (n,), generator=gen).to(torch.float64) * 2 - 1
        perm_b = torch.randperm(n, generator=gen)
        sign_b = torch.randint(0, 2, (n,), generator=gen).to(torch.float64) * 2 - 1
        # Row selection R: a prefix of one permutation, so row i never depends on num_rows;
        # kept up to a whole group of ROW_GROUP rows (see `columns`).
        groups_end = min(n, -(-num_rows // self.ROW_GROUP) * self.ROW_GROUP)
        self._select = torch.randperm(n, generator=gen)[:groups_end]
        order = makhoul_order(n)
        oinv = torch.argsort(order)
        self._h = n // 2 + 1
        t: dict[str, torch.Tensor] = {}
        # Forward: u = (Π′x)[order]; rfft; DCT in folded order (sequential); u = (Π ·)[order]
        # gathered from the folded rows; rfft; the s selected DCT rows R read off the spectrum.
        t["g1"], t["s1"] = perm_a[order], sign_a[order]
        t["fa"], t["fb"], position = folded_coefficients(n)
        t["g2"], t["s2"] = position[perm_b[order]], sign_b[order]
        t["src3"], t["a3"], t["b3"] = dct_row_coefficients(n, self._select)
        # Adjoint: spectrum of Fᵀ Rᵀ y built from the selected rows; irfft; the spectrum
        # of Fᵀ Πᵀ (·) gathered from it; irfft; Π′ᵀ (with the reordering undone).
        ah, bh, am, bm, mirror = idct_coefficients(n)
        t["ah"], t["bh"], t["am"], t["bm"] = ah, bh, am, bm
        pinv_b = torch.argsort(perm_b)
        idx2, sg2 = oinv[pinv_b], sign_b[pinv_b]
        t["head2"], t["mirror2"] = idx2[: self._h], idx2[mirror]
        t["ah2"], t["bh2"] = ah * sg2[: self._h], bh * sg2[: self._h]
        t["am2"], t["bm2"] = am * sg2[mirror], bm * sg2[mirror]
        pinv_a = torch.argsort(perm_a)
        t["g3"], t["s3"] = oinv[pinv_a], sign_a[pinv_a]
        self._cpu = t
        self._cache: dict[tuple[torch.dtype, torch.device], dict[str, torch.Tensor]] = {}

    def _tables(self, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
        key = (dtype, torch.device(device))
        if key not in self._cache:
            moved = {
                k: (v.to(device) if not v.is_floating_point() else v.to(dtype=dtype, device=device))
                for k, v in self._cpu.items()
            }
            self._cache = {key: moved}  # keep one (dtype, device) at a time
        return self._cache[key]

    def _col_step(self, block_size: int | None) -> int:
        if block_size is not None:
            return check_int("block_size", block_size, 1)
        return max(1, BLOCK_ELEMENTS // self.dim)

    def _forward(self, x: torch.Tensor, start: int, stop: int, t: dict) -> torch.Tensor:
        # One vector per row throughout: gathers along rows and row-wise rffts read memory
        # sequentially. The blocks this is applied to are mostly column slices of a
        # column-major Q (LAPACK's layout), whose transpose is already contiguous; other
        # blocks are transposed once. Faster than gathering and transforming along dim 0
        # (measured: benchmarks/results/docstring_timings.md).
        xr = x.T if x.T.is_contiguous() else x.T.contiguous()  # (m, n)
        m = xr.shape[0]
        u = torch.gather(xr, 1, t["g1"].expand(m, -1)).mul_(t["s1"])  # (Π′x)[order]
        spec = torch.fft.rfft(u, dim=1)
        del u
        f = folded_dct(spec.T, t["fa"], t["fb"]).T  # F Π′x, folded order, (m, n)
        del spec
        u = torch.gather(f, 1, t["g2"].expand(m, -1)).mul_(t["s2"])  # (Π F Π′x)[order]
        del f
        spec = torch.fft.rfft(u, dim=1)
        del u
        sl = slice(start, stop)
        return gather_dct_rows(spec.T, t["src3"][sl], t["a3"][sl], t["b3"][sl])

    def _adjoint(self, y: torch.Tensor, rows: torch.Tensor, t: dict) -> torch.Tensor:
        # One vector per row, as in `_forward`; the result is returned as the (n, m)
        # column-major view of an (m, n) block, which is what operators take as input.
        n, h = self.dim, self._h
        dev, m = y.device, y.shape[1]
        cplx = torch.complex64 if y.dtype == torch.float32 else torch.complex128
        spec = torch.zeros((m, h), dtype=cplx, device=dev)
        parts = torch.view_as_real(spec)
        re, im = parts[..., 0], parts[..., 1]
        head = torch.nonzero(rows < h).flatten()
        if head.numel():
            k, yh = rows[head].to(dev), y[head.to(dev)]
            re.index_add_(1, k, (yh * t["ah"][k, None]).T)
            im.index_add_(1, k, (yh * t["bh"][k, None]).T)
        tail = torch.nonzero(rows >= n - h + 1).flatten()
        if tail.numel():
            k, yt = (n - rows[tail]).to(dev), y[tail.to(dev)]
            re.index_add_(1, k, (yt * t["am"][k - 1, None]).T)
            im.index_add_(1, k, (yt * t["bm"][k - 1, None]).T)
        v = torch.fft.irfft(spec, n=n, dim=1)  # Fᵀ Rᵀ y, Makhoul order, (m, n)
        del spec, parts, re, im
        spec = inverse_spectrum(
            torch.index_select(v, 1, t["head2"]).T,
            torch.index_select(v, 1, t["mirror2"]).T,
            t["ah2"],
            t["bh2"],
            t["am2"],
            t["bm2"],
        )
        del v
        v = torch.fft.irfft(spec.T, n=n, dim=1)  # Fᵀ Πᵀ Fᵀ Rᵀ y, Makhoul order
        del spec
        return torch.gather(v, 1, t["g3"].expand(m, -1)).mul_(t["s3"]).T

    def matmul(
        self,
        x: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
        *,
        block_size: int | None = None,
    ) -> torch.Tensor:
        start, stop = self._range(start, stop)
        block, vector = as_block(x, self.dim, "SSRFTNoise.matmul")
        t = self._tables(block.dtype, block.device)
        out = torch.empty((stop - start, block.shape[1]), dtype=block.dtype, device=block.device)
        step = self._col_step(block_size)
        for c0 in range(0, block.shape[1], step):  # batched FFT over `step` columns
            out[:, c0 : c0 + step] = self._forward(block[:, c0 : c0 + step], start, stop, t)
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
        block, vector = as_block(y, stop - start, "SSRFTNoise.rmatmul")
        t = self._tables(block.dtype, block.device)
        rows = self._select[start:stop]
        out = torch.empty((self.dim, block.shape[1]), dtype=block.dtype, device=block.device)
        step = self._col_step(block_size)
        for c0 in range(0, block.shape[1], step):
            out[:, c0 : c0 + step] = self._adjoint(block[:, c0 : c0 + step], rows, t)
        return out[:, 0] if vector else out

    def columns(
        self,
        start: int = 0,
        stop: int | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        start, stop = self._range(start, stop)
        device = torch.device(device)
        # column-major, like the blocks `_adjoint` returns: operators take (m, D) rows
        out = torch.empty((stop - start, self.dim), dtype=dtype, device=device).T
        t = self._tables(dtype, device)
        group = self.ROW_GROUP
        for g0 in range(start // group * group, stop, group):
            # The whole aligned group [g0, g1) is transformed in one fixed layout: the FFT's
            # rounding can depend on the batch, so a row never changes batch.
            g1 = min(g0 + group, self.dim)
            eye = torch.eye(g1 - g0, dtype=dtype, device=device)
            vecs = self._adjoint(eye, self._select[g0:g1], t)
            lo, hi = max(start, g0), min(stop, g1)
            out[:, lo - start : hi - start] = vecs[:, lo - g0 : hi - g0]
        return out
