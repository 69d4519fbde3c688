"""Orthonormal DCT-II and its inverse (DCT-III) along dimension 0, built on ``torch.fft``.

The SSRFT test operator (:mod:`curvsketch.sketch.noise`) needs an orthonormal real
trigonometric transform that costs O(N log N) per vector. PyTorch has no DCT, so it is
computed from one real FFT of length N with Makhoul's reordering (J. Makhoul, "A fast
cosine transform in one and two dimensions", IEEE Trans. ASSP 28(1), 1980):

* forward: ``v = x[order]`` with ``order = [0, 2, 4, …, …, 5, 3, 1]``, ``V = rfft(v)``,
  ``X_k = s_k (cos θ_k Re V_k + sin θ_k Im V_k)``, ``θ_k = πk / 2N``, ``s_0 = √(1/N)``,
  ``s_k = √(2/N)``; for ``k > N/2`` use ``V_k = conj(V_{N−k})``;
* inverse: with ``c = X / s`` and ``c_N = 0``, ``V_k = exp(iθ_k) (c_k − i c_{N−k})`` for
  ``k ≤ N/2``, ``v = irfft(V)``, ``x[order] = v``.

Both are written as *coefficient tables* (one entry per row, computed once in float64)
applied by a gather and a few fused multiply-adds on a whole ``(N, m)`` block, so that the
SSRFT can fold its random signed permutations into the same passes. No Python loop runs
over columns: each transform is one batched FFT.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "dct",
    "dct_row_coefficients",
    "folded_coefficients",
    "folded_dct",
    "gather_dct_rows",
    "idct",
    "idct_coefficients",
    "inverse_spectrum",
    "makhoul_order",
]


def makhoul_order(n: int) -> torch.Tensor:
    """Return the index order ``[0, 2, 4, …, …, 5, 3, 1]`` (CPU LongTensor, ``v = x[order]``)."""
    even = torch.arange(0, n, 2)
    odd = torch.arange(1, n, 2).flip(0)
    return torch.cat([even, odd])


def _trig(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 ``cos θ_k``, ``sin θ_k`` and orthonormal scale ``s_k`` for k = 0..n-1."""
    theta = torch.arange(n, dtype=torch.float64) * (math.pi / (2 * n))
    scale = torch.full((n,), math.sqrt(2.0 / n), dtype=torch.float64)
    scale[0] = math.sqrt(1.0 / n)
    return torch.cos(theta), torch.sin(theta), scale


def dct_row_coefficients(
    n: int, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tables giving rows of the DCT-II from the half spectrum ``V = rfft(x[order])``.

    ``DCT(x)[rows[j]] = a[j] Re V[src[j]] + b[j] Im V[src[j]]``.

    Args:
        n: transform length.
        rows: LongTensor of output indices in ``[0, n)`` (CPU).

    Returns:
        ``(src, a, b)``: LongTensor and two float64 tensors, each of length ``len(rows)``.
    """
    cos, sin, scale = _trig(n)
    h = n // 2 + 1
    mirrored = rows >= h  # V_k = conj(V_{n-k}): same real part, negated imaginary part
    src = torch.where(mirrored, n - rows, rows)
    a = cos[rows] * scale[rows]
    b = torch.where(mirrored, -1.0, 1.0).to(torch.float64) * sin[rows] * scale[rows]
    return src, a, b


def gather_dct_rows(
    spec: torch.Tensor, src: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """Apply :func:`dct_row_coefficients` tables to a half spectrum ``(h, m)``.

    Args:
        spec: complex ``rfft`` output, shape ``(h, m)``.
        src, a, b: tables of length ``k`` on ``spec``'s device (``a``, ``b`` real dtype).

    Returns:
        Real tensor ``(k, m)``.
    """
    # A gather on the real view (h, m, 2) is faster than a complex one, and needs no copy
    # whatever the layout of `spec` (torch's rfft along dim 0 returns it column-major).
    parts = torch.index_select(torch.view_as_real(spec), 0, src)
    out = parts[..., 0] * a[:, None]
    return out.addcmul_(parts[..., 1], b[:, None])


def folded_coefficients(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tables for the DCT-II in *folded* order, read sequentially off the half spectrum.

    The folded order lists ``DCT[0], …, DCT[h−1]`` then ``DCT[n−1], DCT[n−2], …, DCT[h]``,
    so that row ``i`` comes from spectrum row ``j(i) = i`` (``i < h``) or ``i − h + 1``
    (``i ≥ h``): ``folded[i] = a[i] Re V[j(i)] + b[i] Im V[j(i)]`` (:func:`folded_dct`).
    Unlike :func:`gather_dct_rows` this needs no random access into the spectrum; a caller
    that permutes the output anyway gathers from the folded rows with ``position``.

    Args:
        n: transform length.

    Returns:
        ``(a, b, position)``: float64 tables of length ``n`` and the LongTensor
        ``position[k]``, the folded row that holds ``DCT[k]``.
    """
    h = n // 2 + 1
    k = torch.cat([torch.arange(h), torch.arange(n - 1, h - 1, -1)])  # DCT index of row i
    _, a, b = dct_row_coefficients(n, k)
    position = torch.empty(n, dtype=torch.long)
    position[k] = torch.arange(n)
    return a, b, position


def folded_dct(spec: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DCT-II in folded order (see :func:`folded_coefficients`) from ``rfft(x[order])``.

    Args:
        spec: complex half spectrum ``(h, m)``.
        a, b: tables of length ``n`` in the real dtype, on ``spec``'s device.

    Returns:
        Real tensor ``(n, m)``, in the memory layout of ``spec`` (sequential passes).
    """
    n, h, m = a.shape[0], spec.shape[0], spec.shape[1]
    parts = torch.view_as_real(spec)
    re, im = parts[..., 0], parts[..., 1]
    if m > 1 and spec.stride(0) == 1:  # column-major spectrum: write column-major too
        out = torch.empty((m, n), dtype=a.dtype, device=spec.device).T
    else:
        out = torch.empty((n, m), dtype=a.dtype, device=spec.device)
    torch.mul(re, a[:h, None], out=out[:h]).addcmul_(im, b[:h, None])
    tail = slice(1, n - h + 1)
    torch.mul(re[tail], a[h:, None], out=out[h:]).addcmul_(im[tail], b[h:, None])
    return out


def idct_coefficients(n: int) -> tuple[torch.Tensor, ...]:
    """Tables for the inverse transform's half spectrum (see :func:`inverse_spectrum`).

    Args:
        n: transform length.

    Returns:
        ``(ah, bh, am, bm, mirror)``: float64 tables ``ah = cos θ_k / s_k``,
        ``bh = sin θ_k / s_k`` (k < h) and ``am = sin θ_k / s_{n−k}``,
        ``bm = −cos θ_k / s_{n−k}`` (k = 1..h−1), and the LongTensor ``mirror = n − k``.
    """
    cos, sin, scale = _trig(n)
    h = n // 2 + 1
    k = torch.arange(1, h)
    mirror = n - k
    return (
        cos[:h] / scale[:h],
        sin[:h] / scale[:h],
        sin[k] / scale[mirror],
        -cos[k] / scale[mirror],
        mirror,
    )


def inverse_spectrum(
    head: torch.Tensor,
    mirror: torch.Tensor,
    ah: torch.Tensor,
    bh: torch.Tensor,
    am: torch.Tensor,
    bm: torch.Tensor,
) -> torch.Tensor:
    """Half spectrum ``V_k = exp(iθ_k)(c_k − i c_{n−k})`` of the inverse DCT.

    Args:
        head: the coefficients ``X[:h]``, shape ``(h, m)``.
        mirror: the coefficients ``X[n − k]`` for ``k = 1..h−1``, shape ``(h − 1, m)``.
        ah, bh, am, bm: tables from :func:`idct_coefficients` (possibly with signs folded
            in), in the real dtype of ``head`` and on its device.

    Returns:
        Complex tensor ``(h, m)``, column-major when ``head`` is; ``irfft(·, n)`` of it is
        ``IDCT(X)`` in Makhoul order.
    """
    cplx = torch.complex64 if head.dtype == torch.float32 else torch.complex128
    h, m = head.shape
    if m > 1 and head.stride(0) == 1:  # one vector per row: keep it so for a row-wise irfft
        out = torch.empty((m, h), dtype=cplx, device=head.device).T
    else:
        out = torch.empty((h, m), dtype=cplx, device=head.device)
    parts = torch.view_as_real(out)
    re, im = parts[..., 0], parts[..., 1]
    torch.mul(head, ah[:, None], out=re)
    torch.mul(head, bh[:, None], out=im)
    re[1:].addcmul_(mirror, am[:, None])
    im[1:].addcmul_(mirror, bm[:, None])
    return out


def _as_block(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if x.ndim == 1:
        return x.unsqueeze(1), True
    if x.ndim != 2:
        raise ValueError(f"DCT input must be (N,) or (N, m), got shape {tuple(x.shape)}")
    return x, False


def dct(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-II of each column (``scipy.fft.dct(x, axis=0, norm="ortho")``).

    Args:
        x: a real vector ``(N,)`` or block ``(N, m)``.

    Returns:
        The transform, same shape as ``x``.
    """
    block, vector = _as_block(x)
    n, dev, dt = block.shape[0], block.device, block.dtype
    a, b, position = folded_coefficients(n)
    spec = torch.fft.rfft(block[makhoul_order(n).to(dev)], dim=0)
    out = folded_dct(spec, a.to(dtype=dt, device=dev), b.to(dtype=dt, device=dev))
    out = torch.index_select(out, 0, position.to(dev))
    return out[:, 0] if vector else out


def idct(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal inverse DCT-II (a DCT-III) of each column; the adjoint of :func:`dct`.

    Args:
        x: a real vector ``(N,)`` or block ``(N, m)``.

    Returns:
        The inverse transform, same shape as ``x``.
    """
    block, vector = _as_block(x)
    n, dev, dt = block.shape[0], block.device, block.dtype
    *tabs, mirror = idct_coefficients(n)
    ah, bh, am, bm = (t.to(dtype=dt, device=dev) for t in tabs)
    h = n // 2 + 1
    spec = inverse_spectrum(block[:h], block[mirror.to(dev)], ah, bh, am, bm)
    v = torch.fft.irfft(spec, n=n, dim=0)
    out = torch.empty_like(v)
    out[makhoul_order(n).to(dev)] = v
    return out[:, 0] if vector else out
