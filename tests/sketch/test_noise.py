"""Test operators: reproducible from (seed, index), any block split, adjoints, SSRFT."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from curvsketch.sketch.noise import (
    GaussianNoise,
    RademacherNoise,
    SSRFTNoise,
    derive_seed,
    make_noise,
)

KINDS = ["gaussian", "rademacher", "ssrft"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dim", [1, 2, 7, 64, 101, 300])
def test_products_match_the_dense_matrix(kind, dim):
    s = min(dim, 13)
    noise = make_noise(kind, s, dim, seed=3, stream="phi")
    omega = noise.to_dense()
    assert omega.shape == (s, dim) == noise.shape
    x = torch.randn(dim, 5, dtype=torch.float64)
    y = torch.randn(s, 5, dtype=torch.float64)
    torch.testing.assert_close(noise.matmul(x), omega @ x, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(noise @ x, omega @ x, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(noise.rmatmul(y), omega.T @ y, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(noise.matmul(x[:, 0]), omega @ x[:, 0], atol=1e-12, rtol=1e-12)
    if s > 2:
        torch.testing.assert_close(noise.matmul(x, 1, 3), omega[1:3] @ x, atol=1e-12, rtol=0)
        torch.testing.assert_close(noise.rmatmul(y[1:3], 1, 3), omega[1:3].T @ y[1:3])
    # adjoint identity ⟨Ωx, y⟩ = ⟨x, Ωᵀy⟩
    torch.testing.assert_close(
        (noise.matmul(x) * y).sum(), (x * noise.rmatmul(y)).sum(), atol=1e-10, rtol=1e-12
    )


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_rows_are_identical_whatever_the_block_split(kind, data):
    dim = data.draw(st.integers(20, 140))
    s = data.draw(st.integers(1, 20))
    noise = make_noise(kind, s, dim, seed=11, stream="psi")
    whole = noise.to_dense()
    cuts = sorted(data.draw(st.lists(st.integers(0, s), max_size=4)))
    bounds = [0, *cuts, s]
    pieces = [noise.rows(a, b) for a, b in itertools.pairwise(bounds)]
    assert torch.equal(torch.cat(pieces, 0), whole)
    cols = [noise.columns(a, b) for a, b in itertools.pairwise(bounds)]
    assert torch.equal(torch.cat(cols, 1), whole.T)


@pytest.mark.parametrize("kind", KINDS)
def test_row_depends_only_on_seed_stream_and_index(kind):
    a = make_noise(kind, 10, 200, seed=5, stream="psi")
    b = make_noise(kind, 40, 200, seed=5, stream="psi")  # more rows: prefix is unchanged
    assert torch.equal(a.to_dense(), b.rows(0, 10))
    assert torch.equal(a.rows(7, 8), b.rows(7, 8))
    other_seed = make_noise(kind, 10, 200, seed=6, stream="psi")
    other_stream = make_noise(kind, 10, 200, seed=5, stream="phi")
    assert not torch.allclose(a.to_dense(), other_seed.to_dense())
    assert not torch.allclose(a.to_dense(), other_stream.to_dense())


@pytest.mark.parametrize("kind", KINDS)
def test_float32_rows_are_the_float64_rows_rounded(kind):
    noise = make_noise(kind, 9, 333, seed=1)
    r64 = noise.rows(0, 9)
    r32 = noise.rows(0, 9, dtype=torch.float32)
    assert r32.dtype == torch.float32
    torch.testing.assert_close(r32.double(), r64, atol=1e-5, rtol=1e-5)
    x = torch.randn(333, 3)
    torch.testing.assert_close(noise.matmul(x).double(), r64 @ x.double(), atol=1e-3, rtol=1e-4)


def test_gaussian_and_rademacher_entries():
    g = GaussianNoise(50, 2000, seed=0).to_dense()
    assert abs(g.mean().item()) < 0.01
    assert abs(g.var().item() - 1) < 0.02
    r = RademacherNoise(20, 500, seed=0).to_dense()
    assert set(r.unique().tolist()) == {-1.0, 1.0}
    assert abs(r.mean().item()) < 0.03


@pytest.mark.parametrize("dim", [16, 100, 1023, 4096])
def test_ssrft_rows_are_orthonormal_and_mix(dim):
    s = min(dim, 40)
    omega = SSRFTNoise(s, dim, seed=2).to_dense()
    torch.testing.assert_close(
        omega @ omega.T, torch.eye(s, dtype=torch.float64), atol=1e-12, rtol=0
    )
    if dim >= 100:  # a scrambled transform spreads each row over all coordinates
        assert (omega.abs().max(dim=1).values < 6 / dim**0.5).all()


def test_ssrft_full_matrix_is_orthogonal():
    omega = SSRFTNoise(64, 64, seed=0).to_dense()
    eye = torch.eye(64, dtype=torch.float64)
    torch.testing.assert_close(omega.T @ omega, eye, atol=1e-12, rtol=0)


def test_ssrft_products_do_not_depend_on_the_column_block_size():
    noise = SSRFTNoise(30, 500, seed=4)
    x = torch.randn(500, 37, dtype=torch.float64)
    y = torch.randn(30, 37, dtype=torch.float64)
    ref, ref_t = noise.matmul(x), noise.rmatmul(y)
    for bs in (1, 5, 16, 64):
        torch.testing.assert_close(noise.matmul(x, block_size=bs), ref, atol=1e-13, rtol=0)
        torch.testing.assert_close(noise.rmatmul(y, block_size=bs), ref_t, atol=1e-13, rtol=0)


def test_dense_noise_products_chunk_rows(monkeypatch):
    import curvsketch.sketch.noise.dense as noise_mod

    noise = GaussianNoise(23, 50, seed=9)
    ref = noise.to_dense()
    monkeypatch.setattr(noise_mod, "BLOCK_ELEMENTS", 120)  # 2 rows per chunk
    x = torch.randn(50, 4, dtype=torch.float64)
    y = torch.randn(23, 4, dtype=torch.float64)
    torch.testing.assert_close(noise.matmul(x), ref @ x, atol=1e-12, rtol=0)
    torch.testing.assert_close(noise.rmatmul(y), ref.T @ y, atol=1e-12, rtol=0)


def test_derive_seed_is_stable_and_separates_parts():
    assert derive_seed(0, "psi", 3) == derive_seed(0, "psi", 3)
    assert 0 <= derive_seed(0, "psi", 3) < 2**63
    values = {derive_seed(0, "psi", 3), derive_seed(0, "psi", 4), derive_seed(1, "psi", 3)}
    values |= {derive_seed(0, "phi", 3), derive_seed("0", "psi", 3)}
    assert len(values) == 5


def test_errors():
    with pytest.raises(ValueError, match="noise='sparse' is not one of"):
        make_noise("sparse", 3, 10)
    with pytest.raises(ValueError, match="num_rows=11 exceeds dim=10"):
        SSRFTNoise(11, 10)
    with pytest.raises(ValueError, match="num_rows must be an integer >= 1"):
        GaussianNoise(0, 10)
    with pytest.raises(ValueError, match="seed must be an integer"):
        GaussianNoise(2, 10, seed=1.5)  # type: ignore[arg-type]
    noise = GaussianNoise(4, 10)
    with pytest.raises(IndexError, match=r"row range \[2, 5\)"):
        noise.rows(2, 5)
    with pytest.raises(ValueError, match="expected shape"):
        noise.matmul(torch.zeros(9, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="real floating"):
        noise.matmul(torch.zeros(10, 2, dtype=torch.int64))
    assert "GaussianNoise(num_rows=4, dim=10" in repr(noise)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", KINDS)
def test_same_test_vectors_on_cuda(kind):
    noise = make_noise(kind, 20, 1000, seed=7, stream="psi")
    cpu = noise.columns(3, 17)
    gpu = noise.columns(3, 17, device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-12, rtol=0)
    x = torch.randn(1000, 6, dtype=torch.float64)
    torch.testing.assert_close(noise.matmul(x.cuda()).cpu(), noise.matmul(x), atol=1e-10, rtol=0)
    y = torch.randn(20, 6, dtype=torch.float64)
    torch.testing.assert_close(noise.rmatmul(y.cuda()).cpu(), noise.rmatmul(y), atol=1e-10, rtol=0)
