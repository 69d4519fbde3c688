"""Masks as index sets: magnitude (global, layer-wise), random, best, by score; IoU."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis._helpers import (
    F64,
    Factored,
    factored_orth,
    rand_orth,
)
from curvsketch.analysis import (
    best_mask,
    hamming,
    iou,
    layerwise_magnitude_mask,
    magnitude_mask,
    overlap,
    random_mask,
    score_mask,
)
from curvsketch.analysis.masks import flatten_params, magnitude_order, score_order, validate_mask

SETTINGS = settings(max_examples=30, deadline=None)

# Integer-valued θ in a small range: many ties, signs included.
thetas = st.lists(st.integers(-4, 4), min_size=1, max_size=40).map(
    lambda xs: torch.tensor(xs, dtype=F64)
)


def brute_order(scores: torch.Tensor) -> list[int]:
    """Rank by score descending, then index ascending."""
    return sorted(range(scores.numel()), key=lambda i: (-float(scores[i]), i))


@SETTINGS
@given(thetas, st.data())
def test_magnitude_order_and_mask_match_brute_force(theta, data) -> None:
    n = data.draw(st.integers(1, theta.numel()))
    want = brute_order(theta.abs())[:n]
    assert magnitude_order(theta, n).tolist() == want
    assert magnitude_mask(theta, n).tolist() == sorted(want)
    assert score_order(theta.abs(), n).tolist() == want
    assert score_mask(theta.abs(), n).tolist() == sorted(want)


def test_tie_break_is_by_index_and_sign_free() -> None:
    theta = torch.tensor([1.0, -2.0, 2.0, -1.0, 2.0, 0.5])
    assert magnitude_order(theta, 3).tolist() == [1, 2, 4]
    assert magnitude_order(theta, 4).tolist() == [1, 2, 4, 0]
    assert magnitude_mask(theta, 4).tolist() == [0, 1, 2, 4]
    # Repeated calls and a big all-equal vector give the same, lowest-index answer.
    flat = torch.ones(100_000)
    assert magnitude_mask(flat, 5).tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(magnitude_mask(theta, 4), magnitude_mask(theta.clone(), 4))


def test_parameter_lists_flatten_in_order() -> None:
    params = [torch.tensor([[3.0, -1.0], [0.5, 7.0]]), torch.tensor([-5.0, 2.0])]
    assert flatten_params(params).tolist() == [3.0, -1.0, 0.5, 7.0, -5.0, 2.0]
    assert magnitude_mask(params, 3).tolist() == [0, 3, 4]
    p = torch.nn.Parameter(torch.randn(3, requires_grad=True))
    assert not flatten_params([p]).requires_grad


def test_layerwise_magnitude_mask() -> None:
    g = torch.Generator().manual_seed(0)
    params = [
        torch.randn(10, generator=g),
        torch.randn(4, 5, generator=g),
        torch.randn(3, generator=g),
    ]
    got = layerwise_magnitude_mask(params, 0.3)
    want, offset = [], 0
    for p in params:
        flat = p.reshape(-1).abs()
        k = int(0.3 * flat.numel() + 0.5)  # 3, 6, 1
        want += [offset + i for i in brute_order(flat)[:k]]
        offset += flat.numel()
    assert got.tolist() == sorted(want)
    flat = flatten_params(params)
    assert torch.equal(layerwise_magnitude_mask(flat, 0.3, sizes=[10, 20, 3]), got)
    assert torch.equal(layerwise_magnitude_mask(flat, 1.0), torch.arange(33))
    with pytest.raises(ValueError, match="'sizes'"):
        layerwise_magnitude_mask(flat, 0.3, sizes=[10, 20])
    with pytest.raises(ValueError, match="'fraction'"):
        layerwise_magnitude_mask(params, 0.0)
    with pytest.raises(ValueError, match=r"'fraction'.*keeps no entry"):
        layerwise_magnitude_mask([torch.ones(3)], 0.1)


def test_random_mask_is_reproducible_uniform_subset() -> None:
    a = random_mask(1000, 50, seed=3)
    assert torch.equal(a, random_mask(1000, 50, seed=3))
    assert not torch.equal(a, random_mask(1000, 50, seed=4))
    assert a.dtype == torch.long and a.unique().numel() == 50
    assert torch.equal(a, a.sort().values) and int(a.min()) >= 0 and int(a.max()) < 1000
    # Inclusion frequency of every index ≈ k/D.
    counts = torch.zeros(20)
    for seed in range(400):
        counts[random_mask(20, 5, seed)] += 1
    assert float((counts / 400 - 0.25).abs().max()) < 0.1
    with pytest.raises(ValueError, match="'k'"):
        random_mask(10, 11, 0)
    with pytest.raises(ValueError, match="'D'"):
        random_mask(0, 1, 0)


@pytest.mark.parametrize("block_rows", [None, 3, 17])
def test_best_mask_is_top_row_norms_and_maximises_overlap(block_rows) -> None:
    D, o, k = 40, 8, 5
    fac = factored_orth(D, o, 0)
    U = fac.dense()
    norms = U[:, :k].square().sum(1)
    want = sorted(brute_order(norms)[:k])
    assert best_mask(U, k, block_rows=block_rows).tolist() == want
    assert best_mask(fac, k, block_rows=block_rows).tolist() == want
    best = overlap(torch.tensor(want), U[:, :k])
    for seed in range(20):
        assert overlap(random_mask(D, k, seed), U[:, :k]) <= best + 1e-12
    with pytest.raises(ValueError, match="'k'"):
        best_mask(U, o + 1)


def test_best_mask_streams_in_blocks() -> None:
    fac = Factored(rand_orth(100, 4, 1))
    best_mask(fac, 3, block_rows=10)
    assert fac.calls == 10 and fac.rows_read == 100


@SETTINGS
@given(st.integers(2, 60), st.data())
def test_iou_and_hamming_relations(D, data) -> None:
    k = data.draw(st.integers(1, D))
    a = random_mask(D, k, data.draw(st.integers(0, 999)))
    b = random_mask(D, k, data.draw(st.integers(0, 999)))
    ov = overlap(a, b)
    assert iou(a, b) == pytest.approx(ov / (2 - ov), abs=1e-12)
    assert ov == pytest.approx(1 - hamming(a, b) / (2 * k), abs=1e-12)
    assert iou(a, a) == 1.0 and hamming(a, a) == 0


def test_iou_examples() -> None:
    assert iou(torch.tensor([1, 2, 3]), torch.tensor([3, 4])) == pytest.approx(1 / 4)
    assert hamming(torch.tensor([1, 2, 3]), torch.tensor([3, 4])) == 3


def test_validation_errors() -> None:
    with pytest.raises(ValueError, match="'mask_b' contains duplicate"):
        iou(torch.tensor([1, 2]), torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="'m' contains index 5, out of range for D = 5"):
        validate_mask(torch.tensor([0, 5]), "m", D=5)
    with pytest.raises(TypeError, match="'m' must have an integer dtype"):
        validate_mask(torch.tensor([0.0, 1.0]), "m")
    with pytest.raises(ValueError, match="'m' must be 1-D"):
        validate_mask(torch.tensor([[0, 1]]), "m")
    with pytest.raises(ValueError, match="'n'"):
        magnitude_order(torch.ones(3), 4)
    with pytest.raises(ValueError, match="'scores' contains NaN"):
        score_order(torch.tensor([1.0, float("nan")]), 1)
    with pytest.raises(TypeError, match="'theta'"):
        magnitude_mask("abc", 1)
    assert validate_mask(torch.tensor([3, 1], dtype=torch.int32)).dtype == torch.long
