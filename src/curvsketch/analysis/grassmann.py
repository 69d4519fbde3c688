"""Distances and similarities on the Grassmannian, for bases and masks alike.

Masks and eigenspaces are compared as points of Gr(k, D) through their principal angles
θ (Fernandez et al., TMLR 2025, §2, table of metrics):

============== ================================ =================
key            formula                          range
============== ================================ =================
geodesic       ‖θ‖₂                             [0, (π/2)√k]
chordal_2      max 2 sin(θ_i/2)                 [0, √2]
chordal_f      ‖2 sin(θ/2)‖₂                    [0, √(2k)]
projection_2   max sin θ_i                      [0, 1]
projection_f   ‖sin θ‖₂                         [0, √k]
fubini_study   arccos Π cos θ_i                 [0, π/2]
overlap        mean cos² θ_i = ‖AᵀB‖_F² / k     [0, 1] (similarity)
============== ================================ =================

Every distance ``d`` also comes as the normalised similarity ``<key>_sim = 1 − d/max``
(1 = identical spans, 0 = maximally apart). ``k`` is the number of principal angles.
:func:`grassmann_metrics` requires ``p = q`` columns (or an explicit ``k=`` /
``allow_unequal=True``); :func:`overlap` and :func:`principal_angles` accept ``p ≠ q`` and use
``min(p, q)``.
"""

from __future__ import annotations

import math

import torch

from curvsketch.analysis.angles import (
    MaskOrBasis,
    classify,
    cross_matrix,
    prepare_pair,
    principal_angles,
)
from curvsketch.analysis.rows import leading_columns

__all__ = [
    "DISTANCE_KEYS",
    "METRIC_KEYS",
    "SIMILARITY_KEYS",
    "distance_maxima",
    "grassmann_metrics",
    "metrics_from_angles",
    "overlap",
]

#: The six distances, in the order of the paper's table.
DISTANCE_KEYS: tuple[str, ...] = (
    "geodesic",
    "chordal_2",
    "chordal_f",
    "projection_2",
    "projection_f",
    "fubini_study",
)
#: Normalised similarities ``1 − d/max``, one per distance.
SIMILARITY_KEYS: tuple[str, ...] = tuple(f"{key}_sim" for key in DISTANCE_KEYS)
#: All keys returned by :func:`grassmann_metrics`, in order.
METRIC_KEYS: tuple[str, ...] = (*DISTANCE_KEYS, "overlap", *SIMILARITY_KEYS)


def distance_maxima(k: int) -> dict[str, float]:
    """Maximum of each distance over Gr(k, D) (attained by orthogonal spans, D ≥ 2k).

    Args:
        k: Number of principal angles.

    Returns:
        ``{key: max}`` for the keys of :data:`DISTANCE_KEYS`.
    """
    if k < 1:
        raise ValueError(f"'k' must be ≥ 1, got {k}")
    return {
        "geodesic": math.pi / 2 * math.sqrt(k),
        "chordal_2": math.sqrt(2.0),
        "chordal_f": math.sqrt(2.0 * k),
        "projection_2": 1.0,
        "projection_f": math.sqrt(k),
        "fubini_study": math.pi / 2,
    }


def metrics_from_angles(theta: torch.Tensor) -> dict[str, float]:
    """All Grassmann distances, the overlap and the normalised similarities from angles.

    Computed from sines where that is the accurate route: ``chordal = 2 sin(θ/2)``, and
    Fubini–Study as ``atan2(√(1 − P²), P)`` with ``log P = ½ Σ log1p(−sin² θ_i)``, so small
    angles keep their relative accuracy (Fernandez et al., TMLR 2025, §2).

    Args:
        theta: 1-D tensor of principal angles in ``[0, π/2]`` (any order, length k ≥ 1).

    Returns:
        Dict with the keys of :data:`METRIC_KEYS` (Python floats).
    """
    if not isinstance(theta, torch.Tensor) or theta.ndim != 1 or theta.numel() == 0:
        raise ValueError("'theta' must be a non-empty 1-D tensor of principal angles")
    th = theta.detach().to(torch.float64).cpu()
    # Tolerate float32 rounding (arccos(0) = π/2 + 4e-8 in float32), then clamp.
    if (
        bool(torch.isnan(th).any())
        or float(th.min()) < -1e-6
        or float(th.max()) > math.pi / 2 + 1e-6
    ):
        raise ValueError("'theta' must hold principal angles in [0, π/2] (radians)")
    th = th.clamp(0.0, math.pi / 2)
    k = th.numel()
    sin, cos = torch.sin(th), torch.cos(th)
    chord = 2.0 * torch.sin(th / 2.0)
    log_p = 0.5 * torch.log1p(-sin.square().clamp(max=1.0)).sum()
    fubini = math.atan2(math.sqrt(-math.expm1(2.0 * float(log_p))), math.exp(float(log_p)))
    out = {
        "geodesic": float(torch.linalg.vector_norm(th)),
        "chordal_2": float(chord.max()),
        "chordal_f": float(torch.linalg.vector_norm(chord)),
        "projection_2": float(sin.max()),
        "projection_f": float(torch.linalg.vector_norm(sin)),
        "fubini_study": fubini,
        "overlap": float(cos.square().mean()),
    }
    for key, top in distance_maxima(k).items():
        out[f"{key}_sim"] = 1.0 - out[key] / top
    return out


def _dimension(X: MaskOrBasis, name: str) -> int:
    """Columns of a basis or entries of a mask (validated later by the metrics)."""
    return classify(X, name).k


def _leading(X: MaskOrBasis, name: str, k: int) -> MaskOrBasis:
    """The first ``k`` columns of a basis; a mask must already have ``k`` indices."""
    op = classify(X, name)
    if op.kind == "mask":
        if op.k != k:
            raise ValueError(
                f"k={k} but the mask '{name}' has {op.k} indices: a mask is not truncated "
                f"(its order need not be a ranking); pass a mask of k indices, e.g. "
                f"magnitude_mask(theta, {k})"
            )
        return X
    if op.k == k:
        return X
    top = getattr(X, "top", None)
    if op.kind == "factored" and callable(top):
        return top(k)  # e.g. an EighResult: keeps its factored form
    return leading_columns(X, k, name)


def grassmann_metrics(
    A: MaskOrBasis,
    B: MaskOrBasis,
    *,
    k: int | None = None,
    allow_unequal: bool = False,
    check: bool = True,
    orthonormalize: bool = False,
    atol: float | None = None,
    block_rows: int | None = None,
) -> dict[str, float]:
    """The metrics of Fernandez et al. (TMLR 2025, §2) between two bases and/or masks.

    The metrics compare two points of one Grassmannian Gr(k, D): subspaces of equal
    dimension, e.g. a k-mask and the top-k eigenvectors. Arguments of different dimensions
    (a k-mask against a 300-column result) are refused unless ``k`` says which columns to
    use or ``allow_unequal=True`` asks for the ``min(p, q)`` principal angles explicitly.

    Args:
        A: D×p orthonormal basis (tensor or factored ``.shape``/``.rows`` object) or a mask
            (1-D LongTensor of distinct indices; no dense D×k matrix is built).
        B: Same forms as ``A``.
        k: Compare the first ``k`` columns of each basis (the top-k eigenvectors of a
            result sorted by ``|λ|``); a mask must have exactly ``k`` indices.
        allow_unequal: With ``p ≠ q`` and no ``k``: compare the p- and q-dimensional
            subspaces through their ``min(p, q)`` principal angles (the maxima of the
            distances are then those of Gr(min(p, q), D)).
        check: Verify orthonormality of the bases (see :func:`principal_angles`).
        orthonormalize: Orthonormalise the bases by QR instead.
        atol: Orthonormality tolerance (default ``sqrt(eps)`` of the dtype).
        block_rows: Rows per block when streaming factored bases.

    Returns:
        Dict of floats with keys ``geodesic``, ``chordal_2``, ``chordal_f``,
        ``projection_2``, ``projection_f``, ``fubini_study``, ``overlap`` and
        ``geodesic_sim``, ``chordal_2_sim``, ``chordal_f_sim``, ``projection_2_sim``,
        ``projection_f_sim``, ``fubini_study_sim`` (each ``1 − d/max``); see
        :data:`METRIC_KEYS`. With ``allow_unequal`` and ``p ≠ q`` the ``min(p, q)`` angles
        are used and ``overlap = ‖AᵀB‖_F² / min(p, q)``.

    Raises:
        ValueError: ``p ≠ q`` without ``k`` or ``allow_unequal`` (the message names both
            dimensions), a bad ``k``, or the errors of :func:`principal_angles`.
    """
    if not isinstance(allow_unequal, bool):
        raise ValueError(f"'allow_unequal' must be True or False, got {allow_unequal!r}")
    p, q = _dimension(A, "A"), _dimension(B, "B")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(p, q):
            raise ValueError(
                f"'k' must be an int in [1, {min(p, q)}] (A has {p} and B {q} columns or "
                f"indices), got {k!r}"
            )
        A, B = _leading(A, "A", k), _leading(B, "B", k)
    elif p != q and not allow_unequal:
        small, large = ("A", "B") if p < q else ("B", "A")
        raise ValueError(
            f"grassmann_metrics compares subspaces of equal dimension, but A spans {p} and B "
            f"{q} dimensions: pass k={min(p, q)} to compare {small} with the first "
            f"{min(p, q)} columns of {large} (e.g. the top-{min(p, q)} eigenvectors), or "
            f"allow_unequal=True to compare the {p}- and {q}-dimensional subspaces through "
            f"their {min(p, q)} principal angles"
        )
    theta = principal_angles(
        A, B, check=check, orthonormalize=orthonormalize, atol=atol, block_rows=block_rows
    )
    return metrics_from_angles(theta)


def overlap(
    A: MaskOrBasis,
    B: MaskOrBasis,
    *,
    check: bool = True,
    orthonormalize: bool = False,
    atol: float | None = None,
    block_rows: int | None = None,
) -> float:
    """Subspace overlap ``‖AᵀB‖_F² / k``, the mean squared cosine of the principal angles.

    Cheaper than :func:`grassmann_metrics` (no SVD): for a mask ``S`` and basis ``U`` it is
    ``‖U[S, :]‖_F² / k``; for two masks ``|S_A ∩ S_B| / k`` (Fernandez et al., TMLR 2025,
    §2). For a random subspace or mask against a fixed one its expectation is ``k/D``.

    Args:
        A: D×p orthonormal basis (tensor or factored object) or a mask.
        B: Same forms as ``A``.
        check: Verify orthonormality of the bases.
        orthonormalize: Orthonormalise the bases by QR instead.
        atol: Orthonormality tolerance (default ``sqrt(eps)`` of the dtype).
        block_rows: Rows per block when streaming factored bases.

    Returns:
        A float in [0, 1]; ``k = min(p, q)``.
    """
    a, b = prepare_pair(
        A, B, check=check, orthonormalize=orthonormalize, atol=atol, block_rows=block_rows
    )
    n = min(a.k, b.k)
    if a.kind == "mask" and b.kind == "mask":
        return int(torch.isin(a.value, b.value.to(a.value.device)).sum()) / n
    return float(cross_matrix(a, b, block_rows).to(torch.float64).square().sum()) / n
