"""Parameter masks as index sets: magnitude, layer-wise magnitude, random, best, by score.

A k-sparse mask over the D parameters is a 1-D ``LongTensor`` ``S`` of k distinct indices
into ``range(D)``. It stands for the D×k matrix ``M`` whose column j is ``e_{S[j]}``; since
``MᵀM = I_k`` it is a point of the Stiefel manifold and its span a point of the
Grassmannian Gr(k, D), comparable with eigenspaces (Fernandez et al., TMLR 2025, §2).
The dense ``M`` is never built: ``MᵀU = U[S, :]``.

Masks returned by the ``*_mask`` functions are sorted ascending (a canonical set
representation, and sequential reads for on-disk bases); the ``*_order`` functions return
indices ranked by score.

Tie-break rule, everywhere: among equal scores the smaller index ranks first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from curvsketch.analysis.rows import BasisLike, basis_shape, row_norms_sq

__all__ = [
    "best_mask",
    "flatten_params",
    "hamming",
    "intersection_size",
    "iou",
    "layerwise_magnitude_mask",
    "magnitude_mask",
    "magnitude_order",
    "random_mask",
    "score_mask",
    "score_order",
    "validate_mask",
]

ParamsLike = torch.Tensor | Sequence[torch.Tensor]


def flatten_params(theta: ParamsLike, name: str = "theta") -> torch.Tensor:
    """Flatten a tensor, or concatenate a sequence of tensors in order, into a 1-D tensor.

    This is the paper's θ ∈ R^D: all trainable parameters flattened in
    ``model.parameters()`` order (Fernandez et al., TMLR 2025, §2).

    Args:
        theta: A tensor of any shape, or a sequence of tensors (e.g.
            ``list(model.parameters())``).
        name: Argument name used in error messages.

    Returns:
        A detached 1-D tensor of length D.
    """
    if isinstance(theta, torch.Tensor):
        flat = theta.detach().reshape(-1)
    elif isinstance(theta, Sequence) and all(isinstance(t, torch.Tensor) for t in theta):
        if len(theta) == 0:
            raise ValueError(f"'{name}' is an empty sequence: pass at least one tensor")
        flat = torch.cat([t.detach().reshape(-1) for t in theta])
    else:
        raise TypeError(
            f"'{name}' must be a tensor or a sequence of tensors (e.g. "
            f"list(model.parameters())), got {type(theta).__name__}"
        )
    if flat.numel() == 0:
        raise ValueError(f"'{name}' has no elements")
    return flat


def validate_mask(mask: torch.Tensor, name: str = "mask", D: int | None = None) -> torch.Tensor:
    """Check that ``mask`` is a valid index set and return it as a LongTensor.

    Args:
        mask: 1-D integer tensor of distinct indices.
        name: Argument name used in error messages.
        D: If given, every index must lie in ``range(D)``.

    Returns:
        ``mask`` as ``torch.long`` (same order, same device).

    Raises:
        TypeError: For a non-tensor, boolean or floating mask.
        ValueError: For a mask that is empty, not 1-D, has duplicates or is out of range.
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"'{name}' must be a 1-D LongTensor of indices, got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        raise TypeError(
            f"'{name}' is a boolean tensor; masks are index sets: pass {name}.nonzero().squeeze(1)"
        )
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(f"'{name}' must have an integer dtype, got {mask.dtype}")
    if mask.ndim != 1:
        raise ValueError(f"'{name}' must be 1-D, got shape {tuple(mask.shape)}")
    if mask.numel() == 0:
        raise ValueError(f"'{name}' is empty: a mask needs at least one index")
    mask = mask.to(torch.long)
    lo, hi = int(mask.min()), int(mask.max())
    if lo < 0:
        raise ValueError(f"'{name}' contains a negative index ({lo}); indices must be ≥ 0")
    if D is not None and hi >= D:
        raise ValueError(
            f"'{name}' contains index {hi}, out of range for D = {D}: indices must be in range({D})"
        )
    srt = torch.sort(mask).values
    dup = srt[1:][srt[1:] == srt[:-1]]
    if dup.numel():
        raise ValueError(
            f"'{name}' contains duplicate indices (e.g. {int(dup[0])}); pass torch.unique({name})"
        )
    return mask


def _check_count(n: int, D: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"'{name}' must be an int, got {type(n).__name__}")
    if not 1 <= n <= D:
        raise ValueError(f"'{name}' must be in [1, D] = [1, {D}], got {n}")
    return n


def score_order(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` largest ``scores``, largest first, ties by ascending index.

    Works in O(D + n log n): one ``topk`` to find the n-th largest value, then the
    candidates strictly above it plus the lowest-index ties.

    Args:
        scores: 1-D tensor of length D (e.g. ``|θ|``, ``|∇L|``, a GGN diagonal).
        n: How many indices, ``1 ≤ n ≤ D``.

    Returns:
        LongTensor of length n.
    """
    if not isinstance(scores, torch.Tensor) or scores.ndim != 1:
        raise ValueError("'scores' must be a 1-D tensor with one score per parameter")
    if scores.is_complex():
        raise TypeError("'scores' must be real; pass scores.abs() for complex values")
    n = _check_count(n, scores.numel(), "n")
    if scores.is_floating_point() and bool(torch.isnan(scores).any()):
        raise ValueError("'scores' contains NaN; scores must be comparable numbers")
    t = torch.topk(scores, n, sorted=True).values[-1]
    above = (scores > t).nonzero().squeeze(1)
    ties = (scores == t).nonzero().squeeze(1)[: n - above.numel()]
    cand = torch.sort(torch.cat([above, ties])).values
    rank = torch.sort(scores[cand], descending=True, stable=True).indices
    return cand[rank]


def score_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The mask of the ``k`` largest ``scores`` (ties by ascending index), sorted ascending.

    Args:
        scores: 1-D tensor of length D.
        k: Mask size, ``1 ≤ k ≤ D``.

    Returns:
        LongTensor of k distinct indices, ascending.
    """
    return torch.sort(score_order(scores, k)).values


def magnitude_order(theta: ParamsLike, n: int) -> torch.Tensor:
    """Indices of the ``n`` largest ``|θ_i|``, largest first, ties by ascending index.

    Args:
        theta: Parameters: a tensor, or a sequence of tensors flattened in order.
        n: How many indices, ``1 ≤ n ≤ D``.

    Returns:
        LongTensor of length n; its first k entries are the magnitude mask of size k.
    """
    return score_order(flatten_params(theta).abs(), n)


def magnitude_mask(theta: ParamsLike, k: int) -> torch.Tensor:
    """Global magnitude mask: the ``k`` largest ``|θ_i|`` over the whole net.

    Equal magnitudes are broken by ascending index, so the result is deterministic
    (Fernandez et al., TMLR 2025, §2: global, not per layer).

    Args:
        theta: Parameters: a tensor, or a sequence of tensors flattened in order.
        k: Mask size, ``1 ≤ k ≤ D``.

    Returns:
        LongTensor of k distinct indices into the flattened θ, sorted ascending.
    """
    return score_mask(flatten_params(theta).abs(), k)


def layerwise_magnitude_mask(
    params: ParamsLike, fraction: float, *, sizes: Sequence[int] | None = None
) -> torch.Tensor:
    """Layer-wise magnitude mask: the top ``fraction`` of ``|θ|`` within every tensor.

    Tensor ``l`` with ``n_l`` entries keeps ``floor(fraction · n_l + 1/2)`` entries (round
    half up; may be 0 for tiny tensors). Indices refer to the flattened global order.

    Args:
        params: A sequence of tensors (e.g. ``list(model.parameters())``), or one flat
            tensor together with ``sizes``.
        fraction: Kept fraction per tensor, in ``(0, 1]``.
        sizes: Per-tensor sizes when ``params`` is one flat tensor; must sum to its length.
            Without ``sizes`` a single tensor counts as one layer.

    Returns:
        LongTensor of distinct global indices, sorted ascending.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"'fraction' must be in (0, 1], got {fraction}")
    flat = flatten_params(params, "params").abs()
    if sizes is None:
        sizes = (
            [t.numel() for t in params] if not isinstance(params, torch.Tensor) else [flat.numel()]
        )
    elif not isinstance(params, torch.Tensor):
        raise ValueError("'sizes' is only for a flat 'params' tensor; omit it for a sequence")
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes) or sum(sizes) != flat.numel():
        raise ValueError(
            f"'sizes' must be non-negative and sum to the length of 'params' "
            f"({flat.numel()}), got sum {sum(sizes)}"
        )
    parts, offset = [], 0
    for size in sizes:
        k_l = int(fraction * size + 0.5)
        if k_l > 0:
            parts.append(score_order(flat[offset : offset + size], min(k_l, size)) + offset)
        offset += size
    if not parts:
        raise ValueError(f"'fraction' = {fraction} keeps no entry of any tensor; increase it")
    return torch.sort(torch.cat(parts)).values


def random_mask(D: int, k: int, seed: int) -> torch.Tensor:
    """A uniformly random k-subset of ``range(D)``, reproducible from ``seed``.

    Uses a CPU ``torch.Generator`` seeded with ``seed``: the same ``(D, k, seed)`` gives
    the same mask on any machine with the same torch version.

    Args:
        D: Number of parameters.
        k: Mask size, ``1 ≤ k ≤ D``.
        seed: Random seed.

    Returns:
        LongTensor of k distinct indices, sorted ascending.
    """
    if isinstance(D, bool) or not isinstance(D, int) or D < 1:
        raise ValueError(f"'D' must be a positive int (the number of parameters), got {D!r}")
    k = _check_count(k, D, "k")
    gen = torch.Generator().manual_seed(int(seed))
    return torch.sort(torch.randperm(D, generator=gen)[:k]).values


def best_mask(U: BasisLike, k: int, *, block_rows: int | None = None) -> torch.Tensor:
    """The best k-mask for the top-k eigenspace: the k rows of ``U[:, :k]`` of largest norm.

    Maximises the mask overlap ``(1/k) Σ_{i∈S} ‖U[i, :k]‖²`` over all k-subsets (an upper
    reference for magnitude masks, Fernandez et al., TMLR 2025, §2). Every one of the D
    rows must be read: they are streamed in blocks (memory: one block plus D floats).

    Args:
        U: ``(D, o)`` eigenvectors, columns ordered by ``|λ|`` descending, dense or
            factored (``.shape`` and ``.rows``); only the first k columns are used.
        k: Mask size, ``1 ≤ k ≤ o``.
        block_rows: Rows per streamed block (default: about 64 MiB per block).

    Returns:
        LongTensor of k distinct row indices, sorted ascending; ties by ascending index.
    """
    _, o = basis_shape(U, "U")
    k = _check_count(k, o, "k")
    return score_mask(row_norms_sq(U, k, block_rows=block_rows), k)


def intersection_size(mask_a: torch.Tensor, mask_b: torch.Tensor) -> int:
    """``|S_a ∩ S_b|`` for two validated masks."""
    a = validate_mask(mask_a, "mask_a")
    b = validate_mask(mask_b, "mask_b")
    return int(torch.isin(a, b.to(a.device)).sum())


def iou(mask_a: torch.Tensor, mask_b: torch.Tensor) -> float:
    """Intersection over union ``|S_a ∩ S_b| / |S_a ∪ S_b|`` of two masks.

    For equal sizes, ``IoU = overlap / (2 − overlap)`` (Fernandez et al., TMLR 2025, §2).

    Args:
        mask_a: 1-D LongTensor of distinct indices.
        mask_b: 1-D LongTensor of distinct indices.

    Returns:
        A float in [0, 1].
    """
    inter = intersection_size(mask_a, mask_b)
    return inter / (mask_a.numel() + mask_b.numel() - inter)


def hamming(mask_a: torch.Tensor, mask_b: torch.Tensor) -> int:
    """Hamming distance of the two 0/1 indicator vectors: ``|S_a Δ S_b|``.

    For equal sizes k, ``overlap = 1 − hamming / (2k)``.
    """
    inter = intersection_size(mask_a, mask_b)
    return int(mask_a.numel() + mask_b.numel() - 2 * inter)
