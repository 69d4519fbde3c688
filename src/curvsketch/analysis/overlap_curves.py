"""Overlap between masks and top-k eigenspaces, for one k or every k at once.

For a mask ``S`` of k indices and the top-k eigenvectors ``U_k`` (the first k columns of
``U``, ordered by ``|λ|``), ``MᵀU_k = U_k[S, :]``, so (Fernandez et al., TMLR 2025, §2)

    overlap(S, U_k) = (1/k) ‖U_k[S, :]‖_F² = (1/k) Σ_{i∈S} ‖U[i, :k]‖².

No principal angles and nothing of size D×D or D×o is needed: only the rows in ``S``.

Curves over k = 1..o. With the mask order fixed (``S_k`` = first k entries of one ranking,
as for magnitude, score or random-permutation masks) only the o top-ranked rows matter:
with ``G = U[S_o, :o]`` (o×o), ``c[k−1] = (1/k) Σ_{i<k, j<k} G_ij²`` is a prefix sum over
the leading k×k blocks; going from k−1 to k adds the "L" of row k−1 and column k−1, so the
whole curve costs one gather of o rows plus O(o²) work.

Every ``U`` may be a tensor or a factored object with ``.shape`` and ``.rows(index)``
(see :mod:`curvsketch.analysis.rows`); curves are returned in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from curvsketch.analysis.angles import check_basis
from curvsketch.analysis.masks import (
    ParamsLike,
    flatten_params,
    score_order,
    validate_mask,
)
from curvsketch.analysis.rows import (
    BasisLike,
    basis_shape,
    default_block_rows,
    gather_rows,
    iter_row_blocks,
    weighted_row_norms_sq,
)

__all__ = [
    "RandomOverlapCurve",
    "best_overlap_curve",
    "diag_h2",
    "leading_block_curve",
    "mask_overlap",
    "ordered_overlap_curve",
    "overlap_curve",
    "random_overlap_curve",
    "random_overlap_draws",
    "score_overlap_curve",
]


#: What to do about a non-orthonormal ``U`` (the overlap is then no fraction: it can exceed 1).
_FIX = (
    "The overlap of a mask with a non-orthonormal basis is not a fraction (it can exceed 1): "
    "pass orthonormal eigenvectors in the columns, ordered by |λ| (e.g. "
    "torch.linalg.qr(U).Q, which keeps the span of every leading block), raise atol, or pass "
    "check=False"
)


def _check_U(U: BasisLike, n_cols: int, check: bool, atol: float | None) -> None:
    if not isinstance(check, bool):
        raise ValueError(f"'check' must be True or False, got {check!r}")
    if check:
        check_basis(U, "U", n_cols=n_cols, atol=atol, fix=_FIX)


class RandomOverlapCurve(NamedTuple):
    """Overlap curve of random masks: per-k mean and sample std over draws."""

    mean: torch.Tensor
    std: torch.Tensor


def _resolve_o(U: BasisLike, o: int | None) -> tuple[int, int]:
    D, n_cols = basis_shape(U, "U")
    o = n_cols if o is None else o
    if isinstance(o, bool) or not isinstance(o, int) or not 1 <= o <= min(n_cols, D):
        raise ValueError(
            f"'o' must be an int in [1, {min(n_cols, D)}] (the columns of U, at most D), got {o!r}"
        )
    return D, o


def mask_overlap(
    indices: torch.Tensor, U: BasisLike, *, check: bool = True, atol: float | None = None
) -> float:
    """Overlap of a k-mask with the top-k eigenspace, from row norms.

    ``(1/k) Σ_{i∈S} ‖U[i, :k]‖²`` with k = ``len(indices)`` (Fernandez et al., TMLR 2025,
    §2). Reads only the k rows in the mask (plus the orthonormality check).

    Args:
        indices: 1-D LongTensor of k distinct indices into ``range(D)``.
        U: ``(D, o)`` orthonormal eigenvectors, columns by ``|λ|`` descending, ``o ≥ k``;
            dense or factored.
        check: verify that ``U[:, :k]`` is orthonormal, as :func:`overlap` does
            (:func:`~curvsketch.analysis.angles.check_basis`: one streamed pass over the
            rows of a factored ``U``); ``False`` skips it for a basis checked before.
        atol: orthonormality tolerance (default ``sqrt(eps)`` of the dtype).

    Returns:
        The overlap, a float in [0, 1].

    Raises:
        ValueError: a bad mask, ``k > o``, or a non-orthonormal ``U`` (the value would not
            be a fraction).
    """
    D, o = basis_shape(U, "U")
    idx = validate_mask(indices, "indices", D)
    k = idx.numel()
    if k > o:
        raise ValueError(
            f"the mask has k = {k} indices but U has only o = {o} columns: the top-k "
            f"eigenspace needs o ≥ k; pass more eigenvectors or a smaller mask"
        )
    _check_U(U, k, check, atol)
    rows = gather_rows(U, idx)[:, :k].to(torch.float64)
    return float(rows.square().sum()) / k


def leading_block_curve(G: torch.Tensor) -> torch.Tensor:
    """``c[k−1] = (1/k) Σ_{i<k, j<k} G_ij²`` for k = 1..n, vectorised, for an n×n ``G``.

    The increment from k−1 to k is the L-shaped border of the leading k×k block: row k−1
    up to the diagonal plus column k−1 above it.

    Args:
        G: Square tensor; row i = ``U[s_i, :n]`` for the ranked indices s.

    Returns:
        Float64 tensor of length n.
    """
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"'G' must be square, got shape {tuple(G.shape)}")
    G2 = G.to(torch.float64).square()
    increments = torch.tril(G2).sum(1) + torch.triu(G2, diagonal=1).sum(0)
    ks = torch.arange(1, G.shape[0] + 1, dtype=torch.float64, device=G.device)
    return (torch.cumsum(increments, 0) / ks).cpu()


def ordered_overlap_curve(
    order: torch.Tensor, U: BasisLike, *, check: bool = True, atol: float | None = None
) -> torch.Tensor:
    """Overlap curve of nested masks: ``c[k−1]`` for mask = ``order[:k]`` vs ``U[:, :k]``.

    Args:
        order: 1-D LongTensor of n distinct row indices, ranked (best first).
        U: ``(D, o)`` orthonormal eigenvectors with ``o ≥ n``, dense or factored.
        check: verify that ``U[:, :n]`` is orthonormal (as in :func:`mask_overlap`).
        atol: orthonormality tolerance (default ``sqrt(eps)`` of the dtype).

    Returns:
        Float64 tensor of length n; gathers the n rows once, then O(n²) work.
    """
    D, o = basis_shape(U, "U")
    order = validate_mask(order, "order", D)
    n = order.numel()
    if n > o:
        raise ValueError(f"'order' has {n} indices but U has only {o} columns; need n ≤ o")
    _check_U(U, n, check, atol)
    return leading_block_curve(gather_rows(U, order)[:, :n])


def score_overlap_curve(
    scores: torch.Tensor,
    U: BasisLike,
    o: int | None = None,
    *,
    check: bool = True,
    atol: float | None = None,
) -> torch.Tensor:
    """Overlap curve of top-score masks vs top-k eigenspaces, for every k = 1..o.

    ``c[k−1]`` is the overlap between the mask of the k largest scores and ``U[:, :k]``.
    Any per-parameter score works: ``|θ|`` (magnitude), ``|∇L|``, a GGN diagonal,
    ``diag(H²)`` (see :func:`diag_h2`). Ties rank by ascending index.

    Args:
        scores: 1-D tensor of length D.
        U: ``(D, o_U)`` eigenvectors, columns by ``|λ|`` descending; dense or factored.
        o: Curve length (default: all columns of U).
        check: verify that ``U[:, :o]`` is orthonormal (as in :func:`mask_overlap`).
        atol: orthonormality tolerance (default ``sqrt(eps)`` of the dtype).

    Returns:
        Float64 tensor of length o. Cost: one top-o selection over D scores, one gather
        of o rows, O(o²) arithmetic (and the check: one pass over U's rows).
    """
    D, o = _resolve_o(U, o)
    if not isinstance(scores, torch.Tensor) or scores.ndim != 1 or scores.numel() != D:
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"'scores' must be a 1-D tensor of length D = {D} (rows of U), got {got}")
    return ordered_overlap_curve(score_order(scores, o), U, check=check, atol=atol)


def overlap_curve(
    theta: ParamsLike,
    U: BasisLike,
    o: int | None = None,
    *,
    check: bool = True,
    atol: float | None = None,
) -> torch.Tensor:
    """Magnitude-mask overlap curve: ``c[k−1] = overlap(top-k |θ| mask, U[:, :k])``.

    The paper's main measurement (Fernandez et al., TMLR 2025, §2): for each k = 1..o,
    how much of the top-k Hessian eigenspace lies on the k largest-magnitude parameters.
    Only the o largest-|θ| rows of ``U`` are read.

    Args:
        theta: Parameters (a tensor, or a sequence of tensors flattened in order), D total.
        U: ``(D, o_U)`` eigenvectors, columns by ``|λ|`` descending; dense or factored.
        o: Curve length (default: all columns of U).
        check: verify that ``U[:, :o]`` is orthonormal (as in :func:`mask_overlap`).
        atol: orthonormality tolerance (default ``sqrt(eps)`` of the dtype).

    Returns:
        Float64 tensor of length o.

    Example:
        Four parameters, ``|θ|`` largest at indices 1, 3, 2, 0; three eigenvectors
        ``e_1, e_0, e_3``. The top-1 mask {1} holds ``e_1`` (overlap 1), the top-2 mask
        {1, 3} half of ``span(e_1, e_0)``, the top-3 mask {1, 3, 2} two thirds of
        ``span(e_1, e_0, e_3)``:

        >>> import torch
        >>> from curvsketch.analysis import magnitude_mask, overlap, overlap_curve
        >>> theta = torch.tensor([0.1, -3.0, 0.2, 2.0], dtype=torch.float64)
        >>> U = torch.eye(4, dtype=torch.float64)[:, [1, 0, 3]]
        >>> [round(c, 6) for c in overlap_curve(theta, U).tolist()]
        [1.0, 0.5, 0.666667]
        >>> overlap(magnitude_mask(theta, 2), U[:, :2])  # the curve's entry k - 1 = 1
        0.5
    """
    return score_overlap_curve(flatten_params(theta).abs(), U, o, check=check, atol=atol)


def random_overlap_draws(
    U: BasisLike,
    n_draws: int = 10,
    seed: int = 0,
    o: int | None = None,
    *,
    check: bool = True,
    atol: float | None = None,
) -> torch.Tensor:
    """Overlap curves of uniformly random masks, one row per draw.

    Each draw ranks the parameters by a random permutation (from a CPU generator seeded
    with ``seed``); its prefixes are the random masks for every k, so one draw costs one
    ``randperm(D)`` and one gather of o rows. ``E[c[k−1]] = k/D`` exactly.

    Args:
        U: ``(D, o_U)`` eigenvectors, dense or factored.
        n_draws: Number of independent draws (≥ 1).
        seed: Random seed; equal seeds give equal curves.
        o: Curve length (default: all columns of U).
        check: verify once that ``U[:, :o]`` is orthonormal (as in :func:`mask_overlap`).
        atol: orthonormality tolerance (default ``sqrt(eps)`` of the dtype).

    Returns:
        Float64 tensor of shape ``(n_draws, o)``.
    """
    D, o = _resolve_o(U, o)
    if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 1:
        raise ValueError(f"'n_draws' must be a positive int, got {n_draws!r}")
    _check_U(U, o, check, atol)  # once, not once per draw
    gen = torch.Generator().manual_seed(int(seed))
    perms = (torch.randperm(D, generator=gen)[:o] for _ in range(n_draws))
    return torch.stack([ordered_overlap_curve(p, U, check=False) for p in perms])


def random_overlap_curve(
    U: BasisLike,
    n_draws: int = 10,
    seed: int = 0,
    o: int | None = None,
    *,
    check: bool = True,
    atol: float | None = None,
) -> RandomOverlapCurve:
    """Mean and std over draws of the random-mask overlap curve (the chance reference).

    See :func:`random_overlap_draws` (same arguments) for the draws themselves.

    Returns:
        ``RandomOverlapCurve(mean, std)``, float64 tensors of length o; ``std`` is the
        sample standard deviation (``n − 1``), zeros for a single draw. The exact std of
        one draw is :func:`~curvsketch.analysis.chance.random_mask_overlap_std`.
    """
    curves = random_overlap_draws(U, n_draws, seed, o, check=check, atol=atol)
    std = curves.std(0) if curves.shape[0] > 1 else torch.zeros_like(curves[0])
    return RandomOverlapCurve(curves.mean(0), std)


def best_overlap_curve(
    U: BasisLike, ks: Sequence[int] | None = None, *, block_rows: int | None = None
) -> torch.Tensor:
    """Best achievable mask overlap for each k: the k rows of ``U[:, :k]`` of largest norm.

    An upper reference for any k-mask (Fernandez et al., TMLR 2025, §2). Unlike the other
    curves this needs all D rows: one streamed pass over row blocks computes the
    cumulative column norms ``r_i(k) = ‖U[i, :k]‖²`` and merges, for every requested k,
    the running top-``K`` values (``K = max(ks)``) into a ``K × len(ks)`` buffer.

    Cost: reads D·K numbers once; time O(D·K·log) for the per-block top-K; memory one
    block (``block_rows × K``) plus ``K × len(ks)`` floats, never D×o.

    Args:
        U: ``(D, o)`` eigenvectors, columns by ``|λ|`` descending; dense or factored.
        ks: The k values (each in ``[1, o]``); default all ``1..o``.
        block_rows: Rows per streamed block (default: about 64 MiB per block).

    Returns:
        Float64 tensor; entry i is the best overlap for ``ks[i]`` (for the default, entry
        ``k − 1`` is for k).
    """
    _, o = basis_shape(U, "U")
    if ks is None:
        ks_t = torch.arange(1, o + 1)
    else:
        ks_t = torch.as_tensor(list(ks), dtype=torch.long)
        if ks_t.ndim != 1 or ks_t.numel() == 0:
            raise ValueError("'ks' must be a non-empty sequence of ints")
        if int(ks_t.min()) < 1 or int(ks_t.max()) > o:
            raise ValueError(f"every k in 'ks' must be in [1, {o}] (the columns of U)")
    K = int(ks_t.max())
    cols = ks_t - 1
    if block_rows is None:
        block_rows = default_block_rows(K)
    top = torch.empty(0, cols.numel(), dtype=torch.float64)
    for _, block in iter_row_blocks(U, block_rows, K):
        cum = torch.cumsum(block.to(torch.float64).square(), dim=1)[:, cols.to(block.device)]
        merged = torch.cat([top, cum.cpu()])
        top = torch.topk(merged, min(K, merged.shape[0]), dim=0, sorted=True).values
    # Sum of the top-k values of column (k − 1), over the requested ks.
    prefix = torch.cumsum(top, dim=0)
    best = prefix[cols.clamp(max=top.shape[0] - 1), torch.arange(cols.numel())]
    return best / ks_t.to(torch.float64)


def diag_h2(
    eigenvalues: torch.Tensor, U: BasisLike, *, block_rows: int | None = None
) -> torch.Tensor:
    """Diagonal of ``H²`` in the eigenbasis: ``diag(H²)_i = Σ_j λ_j² U_ij²``.

    A curvature-weighted cousin of the row norms that define the overlap (Fernandez et
    al., TMLR 2025, §4); use it as ``scores`` in :func:`score_overlap_curve`. Computed in
    row blocks; with a truncated eigenbasis it is the diagonal of ``(UΛUᵀ)²``.

    Args:
        eigenvalues: 1-D tensor of m ≤ o eigenvalues, matching U's first m columns.
        U: ``(D, o)`` orthonormal eigenvectors; dense or factored.
        block_rows: Rows per streamed block (default: about 64 MiB per block).

    Returns:
        Float64 tensor of length D.
    """
    if not isinstance(eigenvalues, torch.Tensor) or eigenvalues.ndim != 1:
        raise ValueError("'eigenvalues' must be a 1-D tensor, one per column of U")
    return weighted_row_norms_sq(
        U, eigenvalues.detach().to(torch.float64).square(), block_rows=block_rows
    )
