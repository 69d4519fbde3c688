"""Stabilisation heatmaps: eigenspace overlap and mask IoU between pairs of steps."""

from __future__ import annotations

import pytest
import torch

from analysis._helpers import (
    F64,
    factored_orth,
    rand_orth,
)
from curvsketch.analysis import (
    iou,
    iou_matrix,
    magnitude_mask,
    mask_iou_matrix,
    overlap,
    subspace_overlap_matrix,
)


def test_subspace_overlap_matrix() -> None:
    D, k = 25, 4
    facs = [factored_orth(D, 6, s) for s in range(4)]
    dense = [f.dense() for f in facs]
    M = subspace_overlap_matrix(dense, k)
    assert M.shape == (4, 4) and M.dtype == F64
    assert torch.equal(M, M.T) and torch.allclose(M.diagonal(), torch.ones(4, dtype=F64))
    for s in range(4):
        for t in range(4):
            want = overlap(dense[s][:, :k], dense[t][:, :k])
            assert float(M[s, t]) == pytest.approx(want, abs=1e-12)
    assert torch.allclose(subspace_overlap_matrix(facs, k, block_rows=6), M, atol=1e-12)
    mixed = [facs[0], dense[1], facs[2], dense[3]]
    assert torch.allclose(subspace_overlap_matrix(mixed, k), M, atol=1e-12)


def test_subspace_overlap_matrix_errors() -> None:
    U = rand_orth(10, 3, 0)
    with pytest.raises(ValueError, match="'bases\\[1\\]' has D = 11"):
        subspace_overlap_matrix([U, rand_orth(11, 3, 1)], 2)
    with pytest.raises(ValueError, match="'k' must be in \\[1, 3\\]"):
        subspace_overlap_matrix([U, U], 4)
    with pytest.raises(ValueError, match="'bases\\[1\\]' is not orthonormal"):
        subspace_overlap_matrix([U, 2 * U], 2)
    with pytest.raises(ValueError, match="'bases' must be a non-empty list"):
        subspace_overlap_matrix([], 2)


def test_mask_iou_matrix() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(100, generator=g, dtype=F64)
    thetas = [base + 0.3 * s * torch.randn(100, generator=g, dtype=F64) for s in range(5)]
    M = mask_iou_matrix(thetas, 20)
    masks = [magnitude_mask(t, 20) for t in thetas]
    for s in range(5):
        for t in range(5):
            assert float(M[s, t]) == pytest.approx(iou(masks[s], masks[t]))
    assert torch.equal(iou_matrix(masks), M)
    # Parameter lists work too.
    as_lists = [[t[:60].reshape(6, 10), t[60:]] for t in thetas]
    assert torch.equal(mask_iou_matrix(as_lists, 20), M)
    with pytest.raises(ValueError, match="'thetas\\[1\\]' has 99 entries"):
        mask_iou_matrix([base, base[:99]], 5)
