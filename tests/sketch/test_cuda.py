"""The same sketches on CUDA as on the CPU (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from curvsketch.sketch import aposteriori_error, make_noise, seigh, ssvd

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

D = 500


@pytest.fixture
def h(spectral, random_signs):
    lam = torch.arange(1, D + 1, dtype=torch.float64) ** -2.0 * random_signs(D)
    return spectral(lam)[0]


@pytest.mark.parametrize("noise", ["ssrft", "gaussian"])
@pytest.mark.parametrize("recovery", ["singlepass", "hmt"])
def test_seigh_on_cuda_matches_cpu(h, noise, recovery):
    cpu = seigh(h, 30, recovery=recovery, noise=noise, seed=3, progress=False)
    gpu = seigh(h.cuda(), 30, recovery=recovery, noise=noise, seed=3, device="cuda", progress=False)
    assert gpu.Q.device.type == "cuda"
    torch.testing.assert_close(gpu.eigenvalues.cpu(), cpu.eigenvalues, atol=1e-10, rtol=1e-8)
    idx = torch.tensor([0, 7, 499])
    a, b = gpu.rows(idx).cpu(), cpu.rows(idx)
    torch.testing.assert_close(a.abs(), b.abs(), atol=1e-7, rtol=1e-6)  # up to signs


def test_nystrom_ssvd_and_error_on_cuda(spectral):
    lam = torch.arange(1, D + 1, dtype=torch.float64) ** -2.0
    h = spectral(lam)[0].cuda()
    res = seigh(h, 30, recovery="nystrom", progress=False)
    est = aposteriori_error(h, res, progress=False)
    assert est.relative_error < 0.1
    a = torch.randn(300, 8, dtype=torch.float64) @ torch.randn(8, 200, dtype=torch.float64)
    svd = ssvd(a.cuda(), 20, progress=False)
    assert svd.U.device.type == "cuda"
    torch.testing.assert_close(
        svd.singular_values[:8].cpu(), torch.linalg.svdvals(a)[:8], atol=1e-9, rtol=1e-10
    )


def test_float32_ssrft_products_on_cuda():
    noise = make_noise("ssrft", 100, 100_000, seed=1)
    x = torch.randn(100_000, 8)
    torch.testing.assert_close(noise.matmul(x.cuda()).cpu(), noise.matmul(x), atol=1e-4, rtol=1e-4)
