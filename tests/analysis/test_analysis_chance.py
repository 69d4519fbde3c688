"""Chance levels: exact expectations and variances, and the Wachter large-D limits."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from analysis._helpers import (
    F64,
    rand_orth,
)
from curvsketch.analysis import (
    SIMILARITY_KEYS,
    chance_overlap,
    chance_overlap_std,
    expected_mask_metrics,
    grassmann_metrics,
    iou,
    limit_random_metrics,
    overlap,
    random_mask_overlap_std,
)


def test_closed_forms() -> None:
    assert chance_overlap(355, 7030) == pytest.approx(0.0505, abs=1e-4)
    # k = 1: overlap = (aᵀu)² ~ Beta(1/2, (D−1)/2), var = 2(D−1)/(D²(D+2)).
    D = 9
    assert chance_overlap_std(1, D) == pytest.approx(math.sqrt(2 * (D - 1) / (D**2 * (D + 2))))
    assert chance_overlap_std(4, 4) == 0.0 and chance_overlap_std(1, 1) == 0.0
    with pytest.raises(ValueError, match="1 ≤ k ≤ D"):
        chance_overlap(5, 4)
    with pytest.raises(ValueError, match="'pair'"):
        chance_overlap_std(2, 4, pair="bogus")


def test_mask_pair_expectations_exact_by_enumeration() -> None:
    D, k = 8, 3
    fixed = torch.arange(k)
    rows = [
        {**grassmann_metrics(fixed, torch.tensor(c)), "iou": iou(fixed, torch.tensor(c))}
        for c in itertools.combinations(range(D), k)
    ]
    exact = expected_mask_metrics(k, D)
    for key in exact:
        mean = sum(r[key] for r in rows) / len(rows)
        assert exact[key] == pytest.approx(mean, abs=1e-12), key
    var = sum((r["overlap"] - k / D) ** 2 for r in rows) / len(rows)
    assert chance_overlap_std(k, D, pair="mask") == pytest.approx(math.sqrt(var), abs=1e-12)
    assert exact["overlap"] == pytest.approx(chance_overlap(k, D))
    assert exact["projection_f"] ** 0 == 1  # keys present
    # k > D/2: at least 2k − D shared indices.
    assert expected_mask_metrics(5, 6)["overlap"] == pytest.approx(5 / 6)


def test_random_mask_std_exact_by_enumeration() -> None:
    D, k = 9, 3
    U = rand_orth(D, 4, 0)
    vals = [overlap(torch.tensor(c), U[:, :k]) for c in itertools.combinations(range(D), k)]
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    assert mean == pytest.approx(chance_overlap(k, D), abs=1e-12)
    assert random_mask_overlap_std(U, k) == pytest.approx(std, abs=1e-12)


def test_random_subspace_overlap_mean_and_std() -> None:
    D, k, n = 30, 6, 400
    fixed = rand_orth(D, k, 0)
    vals = torch.tensor([overlap(fixed, rand_orth(D, k, s + 1)) for s in range(n)], dtype=F64)
    std = chance_overlap_std(k, D)
    assert abs(float(vals.mean()) - chance_overlap(k, D)) < 4 * std / math.sqrt(n)
    assert float(vals.std()) == pytest.approx(std, rel=0.2)


@pytest.mark.parametrize("rho", [0.05, 0.2, 0.5, 0.75])
def test_wachter_limit_matches_simulation(rho) -> None:
    D = 400
    k = round(rho * D)
    lim = limit_random_metrics(rho)
    assert lim["overlap"] == rho
    sims = [grassmann_metrics(rand_orth(D, k, 2 * s), rand_orth(D, k, 2 * s + 1)) for s in range(3)]
    for key in ("geodesic_sim", "chordal_f_sim", "projection_f_sim", "overlap"):
        mean = sum(s[key] for s in sims) / len(sims)
        assert mean == pytest.approx(lim[key], abs=0.01), key
    for key in ("chordal_2_sim", "projection_2_sim", "fubini_study_sim"):
        assert max(s[key] for s in sims) < 0.05, key


def test_wachter_limit_edges() -> None:
    full = limit_random_metrics(1.0)
    assert full["overlap"] == 1.0 and all(full[key] == 1.0 for key in SIMILARITY_KEYS)
    assert limit_random_metrics(1e-6)["geodesic_sim"] == pytest.approx(0.0, abs=1e-2)
    with pytest.raises(ValueError, match="'rho'"):
        limit_random_metrics(0.0)
