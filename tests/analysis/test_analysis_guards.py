"""Guards against silent wrong values: non-orthonormal bases in the mask overlaps and
curves, and subspaces of different dimensions in the Grassmann metrics."""

from __future__ import annotations

import pytest
import torch

from analysis._helpers import F64, Factored, factored_orth, rand_mask, rand_orth
from curvsketch.analysis import (
    grassmann_metrics,
    magnitude_mask,
    mask_overlap,
    overlap,
    overlap_curve,
    random_overlap_curve,
    score_overlap_curve,
)
from curvsketch.sketch import seigh

D, O = 60, 12  # noqa: E741


def not_orthonormal() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(D, O, generator=g, dtype=F64)  # columns of norm ≈ √D


def symmetric(seed: int = 0) -> torch.Tensor:
    """A D×D symmetric matrix with eigenvalues linspace(3, −2)."""
    u = rand_orth(D, D, 100 + seed)
    return (u * torch.linspace(3, -2, D, dtype=F64)) @ u.T


class CheckedFactored(Factored):
    """A factored basis that can tell its orthonormality error (as EighResult does)."""

    def orthonormality_error(self, k: int) -> float:
        u = self.dense()[:, :k]
        return float((u.T @ u - torch.eye(k, dtype=F64)).abs().max())


def test_overlaps_of_a_non_orthonormal_basis_are_refused() -> None:
    # Before: values far above 1 (up to ~D·k/k), no error.
    U = not_orthonormal()
    theta = torch.randn(D, generator=torch.Generator().manual_seed(1), dtype=F64)
    mask = magnitude_mask(theta, 5)
    calls = [
        lambda u: mask_overlap(mask, u),
        lambda u: overlap_curve(theta, u),
        lambda u: score_overlap_curve(theta.abs(), u),
        lambda u: random_overlap_curve(u, n_draws=2),
    ]
    for call in calls:
        for basis in (U, Factored(U)):
            with pytest.raises(ValueError, match=r"'U(\[:, :\d+\])?' is not orthonormal") as info:
                call(basis)
            message = str(info.value)
            assert "not a fraction" in message and "check=False" in message
    # the unchecked values really are not fractions
    assert mask_overlap(mask, U, check=False) > 1
    assert float(overlap_curve(theta, U, check=False).max()) > 1
    # and overlap() refuses the same basis
    with pytest.raises(ValueError, match="'B' is not orthonormal"):
        overlap(mask, U)


def test_only_the_columns_read_are_checked() -> None:
    U = rand_orth(D, O, 2)
    spoiled = U.clone()
    spoiled[:, -1] *= 3  # the last column is not unit
    mask = rand_mask(D, 4, 3)
    assert mask_overlap(mask, spoiled) == pytest.approx(mask_overlap(mask, U), abs=1e-14)
    torch.testing.assert_close(
        overlap_curve(torch.arange(D, dtype=F64), spoiled, o=O - 1),
        overlap_curve(torch.arange(D, dtype=F64), U, o=O - 1),
    )
    with pytest.raises(ValueError, match="not orthonormal"):
        overlap_curve(torch.arange(D, dtype=F64), spoiled)


def test_factored_bases_that_know_their_error_read_no_extra_rows() -> None:
    fac = CheckedFactored(rand_orth(D, O, 4))
    theta = torch.randn(D, generator=torch.Generator().manual_seed(5), dtype=F64)
    overlap_curve(theta, fac)
    # the check read one row (to learn the dtype), the curve its O rows
    assert fac.rows_read == O + 1
    bad = CheckedFactored(2 * rand_orth(D, O, 4))
    with pytest.raises(ValueError, match=r"not orthonormal: max .* = 3"):
        overlap_curve(theta, bad)
    # a generic factored basis is streamed once (all D rows), in blocks
    plain = factored_orth(D, O, 6)
    overlap_curve(theta, plain)
    assert plain.rows_read == 1 + D + O


def test_sketch_results_are_checked_from_their_factors() -> None:
    res = seigh(symmetric(), O, progress=False)
    theta = torch.randn(D, generator=torch.Generator().manual_seed(7), dtype=F64)
    torch.testing.assert_close(overlap_curve(theta, res), overlap_curve(theta, res.eigenvectors))
    assert "_gram" in res.__dict__  # QᵀQ computed once and cached on the result
    broken = type(res)(res.eigenvalues, 3 * res.Q, res.V)
    with pytest.raises(ValueError, match="'U' is not orthonormal"):
        overlap_curve(theta, broken)


def test_grassmann_metrics_refuse_unequal_dimensions_without_a_choice() -> None:
    # Before: a 5-mask against a 40-column result compared Gr(5) with Gr(40) silently.
    res = seigh(symmetric(), 40, progress=False)
    mask = rand_mask(D, 5, 8)
    with pytest.raises(ValueError, match=r"A spans 5 and B 40 dimensions: pass k=5") as info:
        grassmann_metrics(mask, res)
    assert "allow_unequal=True" in str(info.value)
    want = grassmann_metrics(mask, res.top(5))
    assert grassmann_metrics(mask, res, k=5) == pytest.approx(want, abs=1e-12)
    assert grassmann_metrics(res, mask, k=5) == pytest.approx(want, abs=1e-12)
    dense = res.eigenvectors
    assert grassmann_metrics(mask, dense, k=5) == pytest.approx(want, abs=1e-12)
    explicit = grassmann_metrics(mask, res, allow_unequal=True)
    assert explicit["overlap"] >= want["overlap"] - 1e-12  # a larger subspace holds more
    with pytest.raises(ValueError, match="k=3 but the mask 'A' has 5 indices"):
        grassmann_metrics(mask, res, k=3)
    with pytest.raises(ValueError, match=r"'k' must be an int in \[1, 5\]"):
        grassmann_metrics(mask, res, k=6)
    with pytest.raises(ValueError, match="'allow_unequal' must be True or False"):
        grassmann_metrics(mask, res, allow_unequal="yes")
