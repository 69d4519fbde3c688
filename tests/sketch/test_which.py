"""``which`` = "LM" | "LA" | "SA" for krylov and hmt, against dense ``eigh`` (float64)."""

from __future__ import annotations

import pytest
import torch

from curvsketch.sketch import SYMMETRY_PRODUCTS, EighResult, seigh
from curvsketch.sketch.plan import SHIFT_STEPS

D = 300


@pytest.fixture(scope="module")
def indefinite():
    """``H`` with a dominant positive end (10..20), a negative end (−12..−8) that is not
    among the largest ``|λ|``, and a bulk in [−1, 1]; and its dense eigenvalues."""
    g = torch.Generator().manual_seed(0)
    lam = torch.cat(
        [
            torch.linspace(10, 20, 20, dtype=torch.float64),
            -torch.linspace(8, 12, 20, dtype=torch.float64),
            torch.rand(D - 40, generator=g, dtype=torch.float64) * 2 - 1,
        ]
    )
    u, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    h = (u * lam) @ u.T
    h = (h + h.T) / 2
    return h, torch.linalg.eigvalsh(h)


def reference(ev, which, k=20):
    if which == "LM":
        return ev[torch.argsort(ev.abs(), descending=True)][:k]
    return ev.flip(0)[:k] if which == "LA" else ev[:k]


def rel_err(est, ref):
    return float(((est - ref).abs() / ref.abs()).max())


@pytest.mark.parametrize("which", ["LM", "LA", "SA"])
def test_krylov_top20_match_dense_eigh(indefinite, which):
    h, ev = indefinite
    res = seigh(h, 20, 80, recovery="krylov", which=which, block_size=4, progress=False)
    assert res.which == which and len(res) == 20 and res.num_products == 80
    assert rel_err(res.eigenvalues, reference(ev, which)) < 1e-8
    # the eigenvectors belong to their eigenvalues; the free residuals are the explicit ones
    u = res.eigenvectors
    explicit = (h @ u - u * res.eigenvalues).norm(dim=0)
    assert float(explicit.max()) < 1e-5
    assert (explicit <= res.residual_norms + 1e-12).all()


@pytest.mark.parametrize("which", ["LA", "SA"])
def test_hmt_with_power_iterations_matches_dense_eigh(indefinite, which):
    """Stated tolerance: 1e-4 relative with 24 power iterations (the shifted spectrum
    decays slowly: see curvsketch.sketch.hmt)."""
    h, ev = indefinite
    res = seigh(h, 30, recovery="hmt", which=which, power_iters=24, seed=1, progress=False)
    assert res.num_products == 30 * 26 + SHIFT_STEPS
    assert rel_err(res.top(20).eigenvalues, reference(ev, which)) < 1e-4
    lower, upper = res.eigenvalue_bounds()
    inside = (ev[None, :] >= lower[:, None] - 1e-12) & (ev[None, :] <= upper[:, None] + 1e-12)
    assert inside.any(dim=1).all()
    torch.testing.assert_close(res.eigenvalues, res.ritz_values)


def test_the_shift_products_are_counted(indefinite, counting):
    h, _ = indefinite
    op = counting(h)
    res = seigh(op, 10, recovery="hmt", which="SA", power_iters=1, block_size=8, progress=False)
    assert res.num_products == 10 * 3 + SHIFT_STEPS
    assert op.products == res.num_products + SYMMETRY_PRODUCTS


@pytest.mark.parametrize("recovery", ["krylov", "hmt"])
def test_order_follows_which(indefinite, recovery):
    h, _ = indefinite
    kw = {"power_iters": 2} if recovery == "hmt" else {"block_size": 4}
    la = seigh(h, 15, recovery=recovery, which="LA", progress=False, **kw).eigenvalues
    sa = seigh(h, 15, recovery=recovery, which="SA", progress=False, **kw).eigenvalues
    lm = seigh(h, 15, recovery=recovery, progress=False, **kw).eigenvalues
    assert (la[:-1] >= la[1:]).all() and (sa[:-1] <= sa[1:]).all()
    assert (lm.abs()[:-1] >= lm.abs()[1:]).all()
    assert (la > 0).all() and (sa < 0).all()


@pytest.mark.parametrize("recovery", ["singlepass", "tropp", "nystrom"])
def test_other_recoveries_refuse_which(recovery):
    h = torch.eye(20, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"which='SA' needs recovery='krylov' or 'hmt'"):
        seigh(h, 5, recovery=recovery, which="SA", progress=False)


def test_unknown_which_is_refused():
    with pytest.raises(ValueError, match=r"which='SM' is not one of 'LM'"):
        seigh(torch.eye(20, dtype=torch.float64), 5, recovery="krylov", which="SM")


def test_which_is_saved_and_old_files_load_as_lm(indefinite, tmp_path):
    h, _ = indefinite
    res = seigh(h, 10, recovery="krylov", which="SA", progress=False)
    res.save(tmp_path / "sa.pt")
    back = EighResult.load(tmp_path / "sa.pt")
    assert back.which == "SA" and torch.equal(back.eigenvalues, res.eigenvalues)
    assert "which='SA'" in repr(back)
    payload = torch.load(tmp_path / "sa.pt", weights_only=True)
    del payload["meta"]["which"]  # a file written before the field existed
    torch.save(payload, tmp_path / "old.pt")
    assert EighResult.load(tmp_path / "old.pt").which == "LM"
    with pytest.raises(ValueError, match="which must be 'LM', 'LA' or 'SA'"):
        EighResult(res.eigenvalues, res.Q, res.V, which="XX")
