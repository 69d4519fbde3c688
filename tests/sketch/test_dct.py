"""The orthonormal DCT-II / DCT-III built on torch.fft."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from curvsketch.sketch.dct import dct, idct, makhoul_order


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 16, 17, 100, 101, 1000])
def test_dct_matches_scipy_orthonormal_dct2(n):
    x = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    ref = scipy.fft.dct(x.numpy(), type=2, axis=0, norm="ortho")
    np.testing.assert_allclose(dct(x).numpy(), ref, atol=1e-13)
    np.testing.assert_allclose(dct(x[:, 0]).numpy(), ref[:, 0], atol=1e-13)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 33, 64, 257])
def test_dct_is_orthonormal_and_idct_is_its_adjoint_and_inverse(n):
    eye = torch.eye(n, dtype=torch.float64)
    f = dct(eye)  # the matrix F (columns F e_j)
    torch.testing.assert_close(f.T @ f, eye, atol=1e-13, rtol=0)
    torch.testing.assert_close(idct(eye), f.T, atol=1e-13, rtol=0)
    x = torch.randn(n, 4, dtype=torch.float64)
    torch.testing.assert_close(idct(dct(x)), x, atol=1e-13, rtol=0)
    y = torch.randn(n, 4, dtype=torch.float64)
    # ⟨F x, y⟩ = ⟨x, Fᵀ y⟩
    torch.testing.assert_close((dct(x) * y).sum(), (x * idct(y)).sum(), atol=1e-12, rtol=0)


def test_idct_matches_scipy_dct3():
    x = torch.randn(50, 2, dtype=torch.float64)
    ref = scipy.fft.idct(x.numpy(), type=2, axis=0, norm="ortho")
    np.testing.assert_allclose(idct(x).numpy(), ref, atol=1e-13)


def test_float32_accuracy():
    x = torch.randn(4096, 2)
    ref = scipy.fft.dct(x.double().numpy(), axis=0, norm="ortho")
    np.testing.assert_allclose(dct(x).double().numpy(), ref, atol=2e-5)


def test_makhoul_order_is_even_then_reversed_odd():
    assert makhoul_order(7).tolist() == [0, 2, 4, 6, 5, 3, 1]
    assert makhoul_order(6).tolist() == [0, 2, 4, 5, 3, 1]


def test_rejects_3d_input():
    with pytest.raises(ValueError, match="DCT input"):
        dct(torch.zeros(2, 2, 2))
