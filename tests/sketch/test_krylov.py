"""Randomized block Krylov (``seigh(recovery="krylov")``, :func:`block_krylov`)."""

from __future__ import annotations

import pytest
import torch

from curvsketch.sketch import EighResult, seigh
from curvsketch.sketch.krylov import block_krylov

D = 300


def decaying_indefinite(random_signs, power=-1.0, seed=0):
    return torch.arange(1, D + 1, dtype=torch.float64) ** power * random_signs(D, seed=seed)


def subspace_overlap(u, v):
    """‖UᵀV‖_F² / k for orthonormal U and any V of k columns."""
    q = torch.linalg.qr(v).Q
    return float((u.T @ q).pow(2).sum() / u.shape[1])


def test_ritz_values_and_vectors_match_the_dense_eigendecomposition(
    spectral, random_signs, by_magnitude
):
    lam = decaying_indefinite(random_signs, power=-1.0)
    h, u = spectral(lam)
    res = seigh(h, 20, 160, recovery="krylov", block_size=8, seed=1, progress=False)
    assert isinstance(res, EighResult) and res.recovery == "krylov"
    assert res.num_products == 160 and res.inner == 160 and len(res) == 20
    exact = by_magnitude(lam)[:20]
    torch.testing.assert_close(res.eigenvalues, exact, atol=1e-10, rtol=0)
    order = torch.argsort(lam.abs(), descending=True)[:20]
    assert subspace_overlap(u[:, order], res.eigenvectors) > 1 - 1e-12


def test_free_residuals_equal_the_explicit_ones(spectral, random_signs):
    h, _ = spectral(decaying_indefinite(random_signs, power=-0.5, seed=2), seed=2)
    res = seigh(h, 30, 64, recovery="krylov", block_size=16, seed=0, progress=False)
    x = res.eigenvectors
    hx = h @ x
    ritz = (x * hx).sum(dim=0)
    torch.testing.assert_close(res.ritz_values, ritz, atol=1e-12, rtol=0)
    explicit = (hx - x * ritz).norm(dim=0)
    assert explicit.min() > 1e-3  # a flat spectrum: the residuals are real
    torch.testing.assert_close(res.residual_norms, explicit, atol=1e-11, rtol=1e-8)
    torch.testing.assert_close(res.eigenvalues, torch.sign(ritz) * hx.norm(dim=0))
    torch.testing.assert_close(res.Q.T @ res.Q, torch.eye(64, dtype=torch.float64))


@pytest.mark.parametrize("seed", range(4))
def test_every_bound_holds_an_eigenvalue(spectral, random_signs, seed):
    lam = decaying_indefinite(random_signs, power=-0.6, seed=seed)
    h, _ = spectral(lam, seed=seed)
    res = seigh(h, 25, 60, recovery="krylov", block_size=5 + seed, seed=seed, progress=False)
    lower, upper = res.eigenvalue_bounds()
    assert (upper - lower).min() > 0
    inside = (lam[None, :] >= lower[:, None] - 1e-12) & (lam[None, :] <= upper[:, None] + 1e-12)
    assert inside.any(dim=1).all()


def test_more_accurate_than_subspace_iteration_for_the_same_products(
    spectral, random_signs, by_magnitude
):
    # the reason the recovery exists: a slowly decaying indefinite spectrum, 30 pairs
    lam = decaying_indefinite(random_signs, power=-0.5, seed=3)
    h, u = spectral(lam, seed=3)
    top = torch.argsort(lam.abs(), descending=True)[:30]
    exact = by_magnitude(lam)[:30]
    kry = seigh(h, 30, 120, recovery="krylov", block_size=10, seed=0, progress=False)
    hmt = seigh(h, 40, recovery="hmt", power_iters=1, seed=0, progress=False).top(30)
    assert hmt.num_products == kry.num_products == 120
    err_kry = float((kry.eigenvalues - exact).abs().max())
    err_hmt = float((hmt.eigenvalues - exact).abs().max())
    assert err_kry < 0.2 * err_hmt
    assert subspace_overlap(u[:, top], kry.eigenvectors) > subspace_overlap(
        u[:, top], hmt.eigenvectors
    )


def test_an_invariant_subspace_is_completed_with_fresh_directions(spectral):
    # rank 6 < basis 24: the third block loses rank; the basis stays orthonormal
    lam = torch.zeros(D, dtype=torch.float64)
    lam[:6] = torch.tensor([6.0, -5.0, 4.0, 3.0, -2.0, 1.0])
    h, _ = spectral(lam)
    res = seigh(h, 8, 24, recovery="krylov", block_size=4, seed=0, progress=False)
    torch.testing.assert_close(res.Q.T @ res.Q, torch.eye(24, dtype=torch.float64))
    torch.testing.assert_close(
        res.eigenvalues[:6], torch.tensor([6.0, -5.0, 4.0, 3.0, -2.0, 1.0], dtype=torch.float64)
    )
    assert res.eigenvalues[6:].abs().max() < 1e-12
    assert res.residual_norms.max() < 1e-12


def test_block_size_chunks_products_without_changing_the_result(spectral, random_signs):
    h, _ = spectral(decaying_indefinite(random_signs))
    start = torch.randn(D, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    calls: list[int] = []

    class Op:
        shape, dtype, device = h.shape, h.dtype, h.device

        def __matmul__(self, x):
            calls.append(x.shape[1])
            return h @ x

    whole = block_krylov(h, start, 4, block_size=12, keep=10)
    split = block_krylov(Op(), start, 4, block_size=5, keep=10)
    assert calls == [5, 5, 2] * 4
    torch.testing.assert_close(split.values, whole.values, atol=1e-12, rtol=0)


def test_same_seed_same_result_and_float32(spectral, random_signs):
    h, _ = spectral(decaying_indefinite(random_signs, power=-1.5))
    a = seigh(h.float(), 10, 40, recovery="krylov", block_size=8, seed=7, progress=False)
    b = seigh(h.float(), 10, 40, recovery="krylov", block_size=8, seed=7, progress=False)
    assert a.eigenvalues.dtype == torch.float32
    assert torch.equal(a.eigenvalues, b.eigenvalues)
    exact = seigh(h, 10, 40, recovery="krylov", block_size=8, seed=7, progress=False)
    torch.testing.assert_close(a.eigenvalues.double(), exact.eigenvalues, atol=1e-5, rtol=0)


def test_inner_rounds_up_to_whole_blocks(spectral, random_signs):
    h, _ = spectral(decaying_indefinite(random_signs))
    res = seigh(h, 10, 50, recovery="krylov", block_size=16, progress=False)
    assert res.num_products == res.inner == 64 and res.Q.shape == (D, 64)
    default = seigh(h, 10, recovery="krylov", progress=False)
    assert default.num_products == 21  # inner = 2·outer = 20: blocks of ⌈20/8⌉ = 3, 7 of them


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"outer": 10, "inner": 5}, "inner=5 must be >= outer=10"),
        ({"outer": 10, "inner": 20, "power_iters": 1}, "power_iters=1 needs recovery='hmt'"),
        ({"outer": 10, "inner": 250, "block_size": 120}, "rounds up to 360 columns"),
        ({"outer": 10, "inner": 400}, "exceeds the operator's dimension"),
    ],
)
def test_bad_sizes_name_the_argument(spectral, random_signs, kwargs, match):
    h, _ = spectral(decaying_indefinite(random_signs))
    outer = kwargs.pop("outer")
    with pytest.raises(ValueError, match=match):
        seigh(h, outer, recovery="krylov", progress=False, **kwargs)


def test_store_is_refused(spectral, random_signs):
    h, _ = spectral(decaying_indefinite(random_signs))
    with pytest.raises(ValueError, match="store= supports recovery='singlepass', 'krylov' or"):
        seigh(h, 10, 20, recovery="tropp", store="memory", progress=False)


def test_too_many_blocks_for_the_dimension():
    with pytest.raises(ValueError, match="more than the dimension D=10"):
        block_krylov(
            torch.eye(10, dtype=torch.float64), torch.ones(10, 4).double(), 3, block_size=4
        )


def test_a_basis_that_lost_orthogonality_is_refused_not_used():
    """Rayleigh–Ritz values of a non-orthonormal basis can exceed ‖H‖: refuse them."""
    from curvsketch.sketch.krylov import KrylovOrthogonalityError, check_ritz_orthonormal

    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(200, 20, generator=g, dtype=torch.float32)).Q
    rot = torch.linalg.qr(torch.randn(20, 5, generator=g, dtype=torch.float32)).Q
    check_ritz_orthonormal(q, rot, torch.float32)  # orthonormal: accepted
    bad = q.clone()
    bad[:, 1] = (q[:, 0] + 0.05 * q[:, 1]) / (1 + 0.05**2) ** 0.5  # nearly a copy of column 0
    with pytest.raises(KrylovOrthogonalityError, match="lost orthogonality"):
        check_ritz_orthonormal(bad, torch.eye(20, dtype=torch.float32)[:, :5], torch.float32)


def test_float32_krylov_passes_its_orthogonality_check():
    lam = torch.linspace(10.0, 0.01, 600, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    u = torch.linalg.qr(torch.randn(600, 600, generator=g, dtype=torch.float64)).Q
    h = ((u * lam) @ u.T).float()
    res = seigh(h, 20, 200, recovery="krylov", progress=False)
    top = res.top(20).eigenvectors.double()
    assert float((top.T @ top - torch.eye(20, dtype=torch.float64)).abs().max()) < 1e-3


def test_the_orthogonality_check_reads_a_basis_on_disk_in_row_blocks(tmp_path, monkeypatch):
    """The out-of-core basis (a ZarrMatrix) is checked too, in row blocks."""
    import zarr

    from curvsketch.sketch import krylov
    from curvsketch.store import ZarrMatrix

    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(3000, 20, generator=g, dtype=torch.float32)).Q
    rot = torch.eye(20, dtype=torch.float32)[:, :5]
    monkeypatch.setattr(krylov, "_CHECK_READ_BYTES", 1000 * 20 * 4)  # three row blocks
    good = zarr.open_array(str(tmp_path / "good"), mode="w", shape=q.shape, dtype="float32")
    good[:] = q.numpy()
    krylov.check_ritz_orthonormal(ZarrMatrix(good), rot, torch.float32)
    bad = q.clone()
    bad[:, 1] = (q[:, 0] + 0.05 * q[:, 1]) / (1 + 0.05**2) ** 0.5
    arr = zarr.open_array(str(tmp_path / "bad"), mode="w", shape=q.shape, dtype="float32")
    arr[:] = bad.numpy()
    with pytest.raises(krylov.KrylovOrthogonalityError, match="lost orthogonality"):
        krylov.check_ritz_orthonormal(ZarrMatrix(arr), rot, torch.float32)
