"""Mask overlap by row norms and overlap curves (magnitude, score, random, best), diag(H²)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis._helpers import (
    F64,
    Factored,
    factored_orth,
    one_hot,
    rand_mask,
    rand_orth,
)
from curvsketch.analysis import (
    best_overlap_curve,
    chance_overlap,
    diag_h2,
    magnitude_mask,
    mask_overlap,
    overlap,
    overlap_curve,
    random_mask_overlap_std,
    random_overlap_curve,
    score_overlap_curve,
)
from curvsketch.analysis.overlap_curves import (
    leading_block_curve,
    ordered_overlap_curve,
    random_overlap_draws,
)

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def problems(draw):
    D = draw(st.integers(2, 40))
    o = draw(st.integers(1, min(D, 12)))
    seed = draw(st.integers(0, 10_000))
    g = torch.Generator().manual_seed(seed)
    # Rounded θ: ties happen and must be broken the same way by every code path.
    theta = torch.round(torch.randn(D, generator=g, dtype=F64) * 3) / 3
    return theta, factored_orth(D, o, seed)


@SETTINGS
@given(st.integers(2, 30), st.data())
def test_row_norm_overlap_equals_dense_formula(D, data) -> None:
    o = data.draw(st.integers(1, D))
    k = data.draw(st.integers(1, o))
    U = rand_orth(D, o, data.draw(st.integers(0, 999)))
    S = rand_mask(D, k, data.draw(st.integers(0, 999)))
    dense = float((one_hot(S, D).T @ U[:, :k]).square().sum()) / k
    assert mask_overlap(S, U) == pytest.approx(dense, abs=1e-12)
    assert mask_overlap(S, U) == pytest.approx(overlap(S, U[:, :k]), abs=1e-12)


@SETTINGS
@given(problems())
def test_overlap_curve_equals_brute_force_loop(problem) -> None:
    theta, fac = problem
    U = fac.dense()
    o = U.shape[1]
    curve = overlap_curve(theta, U)
    assert curve.dtype == F64 and curve.shape == (o,)
    brute = [mask_overlap(magnitude_mask(theta, k), U) for k in range(1, o + 1)]
    assert torch.allclose(curve, torch.tensor(brute, dtype=F64), atol=1e-12)
    assert torch.allclose(overlap_curve(theta, fac), curve, atol=1e-12)
    assert torch.allclose(score_overlap_curve(theta.abs(), U), curve, atol=0)
    assert torch.allclose(overlap_curve(theta, U, o=1), curve[:1], atol=0)


def test_overlap_curve_reads_only_o_rows() -> None:
    D, o = 5000, 30
    fac = factored_orth(D, o, 0)
    theta = torch.randn(D, dtype=F64)
    # check=False: the curve itself gathers the o rows once (the orthonormality check of a
    # generic factored basis streams all rows; see test_checks_of_factored_bases)
    overlap_curve(theta, fac, check=False)
    assert fac.rows_read == o and fac.calls == 1  # one gather of the o rows, nothing else
    fac.rows_read = 0
    mask_overlap(magnitude_mask(theta, 7), fac, check=False)
    assert fac.rows_read == 7


def test_leading_block_curve_matches_definition() -> None:
    g = torch.Generator().manual_seed(0)
    G = torch.randn(9, 9, generator=g, dtype=F64)
    want = [float(G[:k, :k].square().sum()) / k for k in range(1, 10)]
    assert torch.allclose(leading_block_curve(G), torch.tensor(want, dtype=F64), atol=1e-12)
    with pytest.raises(ValueError, match="'G' must be square"):
        leading_block_curve(G[:3])


def test_ordered_and_score_curves() -> None:
    D, o = 30, 6
    U = rand_orth(D, o, 1)
    order = torch.tensor([5, 0, 29, 7, 3, 11])
    want = [mask_overlap(order[:k], U) for k in range(1, 7)]
    assert torch.allclose(ordered_overlap_curve(order, U), torch.tensor(want, dtype=F64))
    scores = torch.zeros(D, dtype=F64)
    scores[order] = torch.arange(6, 0, -1, dtype=F64)
    assert torch.allclose(score_overlap_curve(scores, U), torch.tensor(want, dtype=F64))


def test_random_curve_mean_is_chance() -> None:
    D, o, n = 200, 12, 300
    U = rand_orth(D, o, 2)
    mean, std = random_overlap_curve(U, n_draws=n, seed=0)
    draws = random_overlap_draws(U, n_draws=n, seed=0)
    assert draws.shape == (n, o) and mean.shape == std.shape == (o,)
    assert torch.allclose(draws.mean(0), mean) and torch.allclose(draws.std(0), std)
    for k in range(1, o + 1):
        se = random_mask_overlap_std(U, k) / math.sqrt(n)
        assert abs(float(mean[k - 1]) - chance_overlap(k, D)) < 4 * se
        # The empirical spread matches the exact one.
        assert float(std[k - 1]) == pytest.approx(random_mask_overlap_std(U, k), rel=0.25)
    again = random_overlap_draws(U, n_draws=3, seed=5)
    assert torch.equal(again, random_overlap_draws(U, n_draws=3, seed=5))
    assert not torch.equal(again, random_overlap_draws(U, n_draws=3, seed=6))
    fac = Factored(U)
    drawn = random_overlap_draws(fac, n_draws=3, seed=5, check=False)
    assert torch.allclose(drawn, again, atol=1e-12)
    assert fac.rows_read == 3 * o
    assert torch.equal(random_overlap_curve(U, n_draws=1).std, torch.zeros(o, dtype=F64))


def brute_best(U: torch.Tensor, k: int) -> float:
    r = U[:, :k].square().sum(1)
    return float(torch.sort(r, descending=True).values[:k].sum()) / k


@pytest.mark.parametrize("block_rows", [None, 1, 7, 64])
def test_best_curve_matches_brute_force(block_rows) -> None:
    D, o = 50, 9
    fac = factored_orth(D, o, 3)
    U = fac.dense()
    want = torch.tensor([brute_best(U, k) for k in range(1, o + 1)], dtype=F64)
    assert torch.allclose(best_overlap_curve(U, block_rows=block_rows), want, atol=1e-12)
    assert torch.allclose(best_overlap_curve(fac, block_rows=block_rows), want, atol=1e-12)
    ks = [7, 2, 5]
    got = best_overlap_curve(fac, ks, block_rows=block_rows)
    assert torch.allclose(got, want[[k - 1 for k in ks]], atol=1e-12)
    theta = torch.randn(D, dtype=F64)
    assert bool((overlap_curve(theta, U) <= want + 1e-12).all())
    assert bool((want <= 1 + 1e-12).all())


def test_diag_h2() -> None:
    D = 12
    Q = rand_orth(D, D, 4)
    lam = torch.linspace(-3, 5, D, dtype=F64)
    H = Q @ torch.diag(lam) @ Q.T
    assert torch.allclose(diag_h2(lam, Q), torch.diagonal(H @ H), atol=1e-12)
    # Truncated: the diagonal of (U_m Λ_m U_mᵀ)², streamed in blocks, factored too.
    m = 5
    Hm = Q[:, :m] @ torch.diag(lam[:m]) @ Q[:, :m].T
    want = torch.diagonal(Hm @ Hm)
    assert torch.allclose(diag_h2(lam[:m], Q, block_rows=5), want, atol=1e-12)
    assert torch.allclose(diag_h2(lam[:m], Factored(Q), block_rows=5), want, atol=1e-12)
    with pytest.raises(ValueError, match="'weights' has length"):
        diag_h2(torch.ones(D + 1, dtype=F64), Q)


def test_validation_errors() -> None:
    U = rand_orth(20, 4, 0)
    with pytest.raises(ValueError, match="'o' must be an int in \\[1, 4\\]"):
        overlap_curve(torch.randn(20), U, o=5)
    with pytest.raises(ValueError, match="'scores' must be a 1-D tensor of length D = 20"):
        score_overlap_curve(torch.randn(19), U)
    with pytest.raises(ValueError, match="o ≥ k"):
        mask_overlap(torch.arange(5), U)
    with pytest.raises(ValueError, match="'indices' contains duplicate"):
        mask_overlap(torch.tensor([1, 1]), U)
    with pytest.raises(ValueError, match="'n_draws'"):
        random_overlap_curve(U, n_draws=0)
    with pytest.raises(ValueError, match="'ks'"):
        best_overlap_curve(U, [0, 2])
    with pytest.raises(ValueError, match=r"U.rows\(index\) must return"):

        class Bad:
            shape = (20, 4)

            def rows(self, index):
                return torch.zeros(len(index), 3)

        mask_overlap(torch.tensor([1, 2]), Bad(), check=False)
