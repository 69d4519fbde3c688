"""Stabilisation over training: pairwise similarity of eigenspaces and of masks.

The paper's stabilisation heatmaps (Fernandez et al., TMLR 2025, §4): for checkpoints
``t_1, …, t_T``, the overlap between the top-k Hessian eigenspaces at every pair of steps,
and the IoU between the magnitude masks at every pair of steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from curvsketch.analysis.angles import check_orthonormal, classify
from curvsketch.analysis.grassmann import overlap
from curvsketch.analysis.masks import ParamsLike, flatten_params, iou, magnitude_mask
from curvsketch.analysis.rows import BasisLike, basis_shape, leading_columns

__all__ = ["iou_matrix", "mask_iou_matrix", "subspace_overlap_matrix"]


def _check_list(items: Sequence[object], name: str) -> None:
    if isinstance(items, torch.Tensor) or not isinstance(items, Sequence) or len(items) == 0:
        raise ValueError(f"'{name}' must be a non-empty list (one entry per training step)")


def subspace_overlap_matrix(
    bases: Sequence[BasisLike],
    k: int,
    *,
    check: bool = True,
    atol: float | None = None,
    block_rows: int | None = None,
) -> torch.Tensor:
    """Overlap between the top-k eigenspaces of every pair of steps.

    Entry ``(s, t)`` is ``‖U_s[:, :k]ᵀ U_t[:, :k]‖_F² / k`` (Fernandez et al., TMLR 2025,
    §2 and §4). Each basis is checked once, then T(T − 1)/2 products are formed; factored
    bases are streamed over row blocks (one pass per pair).

    Args:
        bases: One ``(D, o_t)`` eigenvector matrix per step, columns by ``|λ|``
            descending, ``o_t ≥ k``; tensors or factored ``.shape``/``.rows`` objects.
        k: Eigenspace dimension.
        check: Verify that each ``U_t[:, :k]`` is orthonormal.
        atol: Orthonormality tolerance (default ``sqrt(eps)`` of the dtype).
        block_rows: Rows per block when streaming factored bases.

    Returns:
        Symmetric float64 ``(T, T)`` tensor with ones on the diagonal.
    """
    _check_list(bases, "bases")
    shapes = [basis_shape(U, f"bases[{t}]") for t, U in enumerate(bases)]
    D = shapes[0][0]
    for t, (D_t, o_t) in enumerate(shapes):
        if D_t != D:
            raise ValueError(f"'bases[{t}]' has D = {D_t} rows but 'bases[0]' has {D}")
        if not 1 <= k <= min(o_t, D):
            raise ValueError(
                f"'k' must be in [1, {min(o_t, D)}] (columns of 'bases[{t}]'), got {k}"
            )
    heads = [leading_columns(U, k, f"bases[{t}]") for t, U in enumerate(bases)]
    if check:
        for t, U in enumerate(heads):
            check_orthonormal(classify(U, f"bases[{t}]"), atol, block_rows)
    T = len(heads)
    out = torch.eye(T, dtype=torch.float64)
    for s in range(T):
        for t in range(s + 1, T):
            value = overlap(heads[s], heads[t], check=False, block_rows=block_rows)
            out[s, t] = out[t, s] = value
    return out


def iou_matrix(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Pairwise IoU ``|S_s ∩ S_t| / |S_s ∪ S_t|`` of a list of masks.

    Args:
        masks: 1-D LongTensors of distinct indices.

    Returns:
        Symmetric float64 ``(T, T)`` tensor with ones on the diagonal.
    """
    _check_list(masks, "masks")
    T = len(masks)
    out = torch.eye(T, dtype=torch.float64)
    for s in range(T):
        for t in range(s + 1, T):
            out[s, t] = out[t, s] = iou(masks[s], masks[t])
    return out


def mask_iou_matrix(thetas: Sequence[ParamsLike], k: int) -> torch.Tensor:
    """IoU between the top-k magnitude masks of every pair of steps.

    Args:
        thetas: Parameters at each step (tensors, or sequences of tensors flattened in
            order), all of the same total length D.
        k: Mask size, ``1 ≤ k ≤ D``.

    Returns:
        Symmetric float64 ``(T, T)`` tensor with ones on the diagonal (Fernandez et al.,
        TMLR 2025, §4: masks settle within the first few hundred steps).
    """
    _check_list(thetas, "thetas")
    flats = [flatten_params(theta, f"thetas[{t}]") for t, theta in enumerate(thetas)]
    D = flats[0].numel()
    for t, flat in enumerate(flats):
        if flat.numel() != D:
            raise ValueError(f"'thetas[{t}]' has {flat.numel()} entries but 'thetas[0]' has {D}")
    return iou_matrix([magnitude_mask(flat, k) for flat in flats])
