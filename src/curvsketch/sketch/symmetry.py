"""A two-product symmetry check, run by :func:`curvsketch.sketch.seigh` before it sketches.

Every recovery of ``seigh`` assumes ``H = Hᵀ``: the single-pass core is symmetrised,
Rayleigh–Ritz uses ``QᵀHQ`` and Krylov its lower blocks. A non-symmetric operator is
still "solved", and each recovery returns a different wrong answer. The check multiplies
one ``(D, 2)`` block ``[u, v]`` of fixed, seeded unit vectors (one call of the operator,
two products) and compares the two bilinear forms (a randomized test in the spirit of
Freivalds, "Probabilistic machines can use less running time", IFIP 1977)::

    asymmetry = |uᵀ(Hv) − vᵀ(Hu)| / (‖u‖‖Hv‖ + ‖v‖‖Hu‖)  ∈ [0, 1].

For ``H = S + A`` (``S`` symmetric, ``A`` antisymmetric) the numerator is ``2|uᵀAv|``; for
random unit ``u, v`` in ``D`` dimensions it is about ``|g|·‖A‖_F/D`` with ``g ~ N(0, 1)``
while ``‖Hu‖ ≈ ‖H‖_F/√D``, so ``asymmetry ≈ |g|·‖A‖_F/(√D·‖H‖_F)``: a fully
non-symmetric operator reads about ``1/√D``.

Tolerance, by dtype (``eps`` its unit roundoff): ``√eps + √D·eps`` (about ``1.5e-8`` in
float64 and ``3.5e-4`` in float32 for moderate ``D``). For an exactly symmetric operator
the numerator is rounding only: the two dot products each err by at most about
``√D·eps·‖u‖‖Hv‖`` with high probability (Higham & Mary, "A new approach to probabilistic
rounding error analysis", SIAM J. Sci. Comput. 41(5), 2019; measured here: below
``1·eps`` for dense matrices and network Hessians/GGNs up to ``D = 6·10³``), and the
operator's own rounding adds about its relative accuracy; the ``√eps`` term lets an
operator lose half its digits (TF32 kernels, non-deterministic reductions, cancellation in
double backward) without a false alarm. So the check flags asymmetries with
``‖H − Hᵀ‖_F / ‖H‖_F`` above roughly ``tolerance·√D`` (a genuine bug, e.g. a Jacobian
or a one-sided product, is of order 1); smaller ones pass, which the recoveries tolerate
as they symmetrise.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from curvsketch.sketch.measure import apply_in_blocks
from curvsketch.sketch.noise import GaussianNoise

__all__ = [
    "STREAM_SYMMETRY",
    "SYMMETRY_PRODUCTS",
    "AsymmetricOperatorError",
    "check_symmetric",
    "symmetry_tolerance",
]

#: Stream of the two test vectors (seed 0: the same vectors for every run of an operator).
STREAM_SYMMETRY = "seigh.symmetry"
#: Operator products the check spends (one call on a ``(D, 2)`` block).
SYMMETRY_PRODUCTS = 2


class AsymmetricOperatorError(ValueError):
    """The operator given to a symmetric solver is not symmetric.

    Attributes:
        asymmetry: the measured relative asymmetry (see :func:`check_symmetric`).
        tolerance: the tolerance it exceeded.
    """

    def __init__(self, message: str, asymmetry: float, tolerance: float) -> None:
        super().__init__(message)
        self.asymmetry, self.tolerance = asymmetry, tolerance


def symmetry_tolerance(dtype: torch.dtype, dim: int) -> float:
    """Default tolerance of :func:`check_symmetric`: ``√eps + √D·eps`` of ``dtype``."""
    eps = torch.finfo(dtype).eps
    return math.sqrt(eps) + math.sqrt(dim) * eps


def _describe(op: Any) -> str:
    name = type(op).__name__
    inner = getattr(op, "matrix", None)
    if isinstance(inner, torch.Tensor):
        name += f" of a {tuple(inner.shape)} {str(inner.dtype).removeprefix('torch.')} tensor"
    return name


def check_symmetric(
    op: Any,
    who: str,
    *,
    rtol: float | None = None,
    block_size: int | None = None,
) -> float:
    """Raise :class:`AsymmetricOperatorError` unless ``uᵀHv ≈ vᵀHu`` for seeded ``u, v``.

    Spends :data:`SYMMETRY_PRODUCTS` products (one ``(D, 2)`` call, or two calls with
    ``block_size=1``); see the module docstring for the test and its tolerance.

    Args:
        op: a square operator (``.shape``, ``.dtype``, ``.device``, ``@``).
        who: the calling function, for the message (e.g. ``"seigh"``).
        rtol: tolerance on the relative asymmetry; ``None``:
            :func:`symmetry_tolerance` of ``op.dtype`` and ``D``.
        block_size: most vectors per operator call (``None``: both at once).

    Returns:
        The measured relative asymmetry (a float in ``[0, 1]``).

    Raises:
        AsymmetricOperatorError: the asymmetry exceeds the tolerance.
        ValueError: ``rtol`` is not a positive finite number, or the products are not
            finite (:class:`~curvsketch.sketch.measure.NonFiniteMeasurementError`).
    """
    dim = int(op.shape[0])
    if rtol is None:
        tol = symmetry_tolerance(op.dtype, dim)
    elif isinstance(rtol, bool) or not isinstance(rtol, int | float) or not 0 < rtol < math.inf:
        raise ValueError(
            f"{who}: symmetry_rtol must be a positive number (the relative asymmetry to "
            f"tolerate), got {rtol!r}; leave it None for the dtype's default"
        )
    else:
        tol = float(rtol)
    if dim < 2:
        return 0.0
    uv = GaussianNoise(2, dim, 0, STREAM_SYMMETRY).columns(0, 2)
    uv = (uv / torch.linalg.vector_norm(uv, dim=0)).to(dtype=op.dtype, device=op.device)
    huv = apply_in_blocks(op, uv, block_size or 2, what="op @ [u, v] (symmetry check)")
    forms = (uv.T @ huv).to(torch.float64)
    lengths = torch.linalg.vector_norm(huv, dim=0).to(torch.float64)
    numerator = float((forms[0, 1] - forms[1, 0]).abs())
    denominator = float(lengths.sum())
    asymmetry = numerator / denominator if denominator > 0 else 0.0
    if asymmetry > tol:
        raise AsymmetricOperatorError(
            f"{who}: op ({_describe(op)}, D={dim}) is not symmetric: for two fixed test "
            f"vectors u, v, |uᵀHv − vᵀHu| / (‖u‖‖Hv‖ + ‖v‖‖Hu‖) = {asymmetry:.3g} > "
            f"tolerance {tol:.3g} ({str(op.dtype).removeprefix('torch.')} rounding; a fully "
            f"non-symmetric operator gives about 1/√D = {1 / math.sqrt(dim):.2g}). {who} "
            "computes eigenpairs of symmetric operators only (a Hessian or GGN): use "
            "curvsketch.sketch.ssvd for a non-symmetric operator (singular values), "
            "symmetrise it as (H + Hᵀ)/2 if that is the operator you mean, or pass "
            "check_symmetry=False (or a larger symmetry_rtol) if the asymmetry is known "
            "rounding",
            asymmetry,
            tol,
        )
    return asymmetry
