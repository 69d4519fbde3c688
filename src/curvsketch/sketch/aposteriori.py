"""A-posteriori error estimates for a low-rank approximation, with probability bounds.

Tropp, Yurtsever, Udell, Cevher, "Streaming low-rank matrix approximation with an
application to scientific simulation", SIAM J. Sci. Comput. 41(4), 2019, §6: with ``p``
standard Gaussian test vectors ``ω_j``, drawn independently of the sketch,

    err² = (1/p) Σ_j ‖(A − Â) ω_j‖²

is an unbiased estimate of ``‖A − Â‖_F²``, and the same products give unbiased estimates
of ``‖A‖_F²`` and ``‖Â‖_F²``. For real matrices

    P[err² ≤ (1 − ε)‖A − Â‖_F²] ≤ (e^ε (1 − ε))^{p/2}
    P[err² ≥ (1 + ε)‖A − Â‖_F²] ≤ (e^{−ε} (1 + ε))^{p/2}

(p = 30, ε = 0.5: 0.055 and 0.242). Scree bounds for rank-r truncations (same section):
``lower(r) = Σ_{j>r} λ̂_j² / ‖A‖_F²`` and ``upper(r) = ((√Σ_{j>r} λ̂_j² + err) / ‖A‖_F)²``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.measure import block_ranges, check_finite
from curvsketch.sketch.noise import GaussianNoise
from curvsketch.sketch.result import EighResult, SvdResult
from curvsketch.sketch.validate import check_block_size, check_count, check_operator, check_seed

__all__ = [
    "STREAM",
    "ErrorEstimate",
    "aposteriori_error",
    "error_probability_bounds",
    "scree_bounds",
]

#: Stream of the test vectors: distinct from every sketch stream, so they are independent
#: of the sketch even under the same user seed.
STREAM = "aposteriori.omega"


def error_probability_bounds(num_tests: int, eps: float) -> tuple[float, float]:
    """Failure probabilities of the estimate ``err²`` (Tropp et al. 2019, §6, real case).

    Args:
        num_tests: ``p``, the number of Gaussian test vectors.
        eps: relative deviation ``ε > 0``.

    Returns:
        ``(below, above)``: bounds on ``P[err² ≤ (1−ε)‖E‖_F²]`` (``0`` for ``ε ≥ 1``) and
        ``P[err² ≥ (1+ε)‖E‖_F²]``.
    """
    check_count("num_tests", num_tests, 1, "Gaussian test vectors")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    half = num_tests / 2
    below = 0.0 if eps >= 1 else (math.exp(eps) * (1 - eps)) ** half
    above = (math.exp(-eps) * (1 + eps)) ** half
    return below, above


def scree_bounds(
    values: torch.Tensor, frob_op: float, frob_residual: float
) -> tuple[list[float], list[float]]:
    """Scree lower/upper bounds for every truncation rank ``r = 0..k`` (Tropp et al. 2019, §6).

    Args:
        values: eigenvalues (or singular values) ``λ̂`` of the approximation.
        frob_op: ``‖A‖_F`` (estimate).
        frob_residual: ``err``, the estimate of ``‖A − Â‖_F``.

    Returns:
        ``(lower, upper)``, lists of length ``k + 1`` indexed by ``r``.
    """
    mags = torch.sort(values.detach().double().abs().cpu(), descending=True).values
    sq = mags**2
    # tail[r] = Σ_{j>r} λ̂_j² (1-based j), r = 0..k
    tail = torch.cat([torch.flip(torch.cumsum(torch.flip(sq, [0]), 0), [0]), sq.new_zeros(1)])
    tail = torch.clamp(tail, min=0.0)
    if frob_op == 0:
        nan = [math.nan] * len(tail)
        return nan, list(nan)
    lower = (tail / frob_op**2).tolist()
    upper = ((tail.sqrt() + frob_residual) / frob_op).pow(2).tolist()
    return lower, upper


@dataclass(frozen=True)
class ErrorEstimate:
    """Result of :func:`aposteriori_error` (all floats, JSON-friendly via :meth:`to_dict`).

    Attributes:
        num_tests: ``p``.
        seed: seed of the test vectors (stream :data:`STREAM`).
        frob_op: estimate of ``‖A‖_F``.
        frob_approx: estimate of ``‖Â‖_F``.
        frob_residual: ``err``, the estimate of ``‖A − Â‖_F``.
        relative_error: ``frob_residual / frob_op``.
        residual_samples: ``‖(A − Â)ω_j‖²`` for each test vector.
        scree_lower: scree lower bounds for ``r = 0..k`` (``None`` for a plain operator).
        scree_upper: scree upper bounds for ``r = 0..k``.
    """

    num_tests: int
    seed: int
    frob_op: float
    frob_approx: float
    frob_residual: float
    relative_error: float
    residual_samples: tuple[float, ...]
    scree_lower: tuple[float, ...] | None = None
    scree_upper: tuple[float, ...] | None = None

    def probability_bounds(self, eps: float) -> tuple[float, float]:
        """:func:`error_probability_bounds` for this estimate's ``num_tests``."""
        return error_probability_bounds(self.num_tests, eps)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of floats, ints and lists (``json.dumps``-able)."""
        out = asdict(self)
        for key in ("residual_samples", "scree_lower", "scree_upper"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorEstimate:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        for key in ("residual_samples", "scree_lower", "scree_upper"):
            if data.get(key) is not None:
                data[key] = tuple(float(v) for v in data[key])
        return cls(**data)


def _approx_operator(approx: Any) -> tuple[Any, torch.Tensor | None]:
    if isinstance(approx, EighResult):
        return approx.as_operator(), approx.approximation_values
    if isinstance(approx, SvdResult):
        return approx.as_operator(), approx.singular_values
    return check_operator(approx, "aposteriori_error (approx)"), None


def aposteriori_error(
    op: Any,
    approx: Any,
    num_tests: int = 30,
    seed: int = 0,
    *,
    block_size: int | None = None,
    progress: bool = True,
) -> ErrorEstimate:
    """Estimate ``‖A − Â‖_F``, ``‖A‖_F`` and ``‖Â‖_F`` from ``num_tests`` products (§6).

    Args:
        op: the operator ``A`` (``M × N``).
        approx: its approximation: an :class:`EighResult`, an :class:`SvdResult` or any
            operator of the same shape and dtype.
        num_tests: ``p``, the number of Gaussian test vectors (``p`` products with ``op``).
        seed: seed of the test vectors (own stream; independent of any sketch seed).
        block_size: test vectors per product (default ``min(64, p)``).
        progress: report products on stderr.

    Returns:
        :class:`ErrorEstimate`, with scree bounds when ``approx`` is a result object.

    Raises:
        ValueError: shape or dtype mismatch, bad arguments, non-finite products.

    Example:
        ``A = diag(10, 9, …, 1)``: its full sketch is ``A`` itself (error at round-off);
        a rank-3 sketch leaves at least the best rank-3 error ``√(140/385) ≈ 0.60``:

        >>> import torch
        >>> from curvsketch import aposteriori_error, seigh
        >>> A = torch.diag(torch.arange(10.0, 0.0, -1.0, dtype=torch.float64))
        >>> full = aposteriori_error(A, seigh(A, 10, 10, progress=False), progress=False)
        >>> full.relative_error < 1e-12, full.num_tests
        (True, 30)
        >>> low = aposteriori_error(A, seigh(A, 3, 6, progress=False), progress=False)
        >>> 0.5 < low.relative_error < 1.0
        True
        >>> len(low.scree_lower), len(low.scree_upper)  # bounds for rank r = 0..3
        (4, 4)
    """
    op = check_operator(op, "aposteriori_error")
    approx_op, values = _approx_operator(approx)
    if tuple(approx_op.shape) != tuple(op.shape):
        raise ValueError(
            f"aposteriori_error: approx has shape {tuple(approx_op.shape)} but op has "
            f"{tuple(op.shape)}; pass the approximation of this operator"
        )
    if approx_op.dtype != op.dtype:
        raise ValueError(
            f"aposteriori_error: approx.dtype {approx_op.dtype} differs from op.dtype "
            f"{op.dtype}; compute both in the same dtype"
        )
    num_tests = check_count("num_tests", num_tests, 1, "Gaussian test vectors; 30 is typical")
    seed = check_seed(seed)
    block = check_block_size(block_size, num_tests)
    n = int(op.shape[1])
    tests = GaussianNoise(num_tests, n, seed, STREAM)
    res_sq = torch.empty(num_tests, dtype=torch.float64)
    op_sq = torch.empty(num_tests, dtype=torch.float64)
    approx_sq = torch.empty(num_tests, dtype=torch.float64)
    with Progress(num_tests, "a-posteriori products", enabled=progress, unit="products") as bar:
        for i0, i1 in block_ranges(0, num_tests, block):
            w = tests.columns(i0, i1, dtype=op.dtype, device=op.device)
            aw = check_finite(op @ w, "op @ aposteriori test vectors", i0, i1).double()
            bw = (approx_op @ w).double()
            res_sq[i0:i1] = (aw - bw).pow(2).sum(0).cpu()
            op_sq[i0:i1] = aw.pow(2).sum(0).cpu()
            approx_sq[i0:i1] = bw.pow(2).sum(0).cpu()
            bar.update(i1 - i0)
    err = math.sqrt(float(res_sq.mean()))
    frob_op = math.sqrt(float(op_sq.mean()))
    frob_approx = math.sqrt(float(approx_sq.mean()))
    relative = err / frob_op if frob_op > 0 else (0.0 if err == 0 else math.inf)
    lower = upper = None
    if values is not None:
        lo, up = scree_bounds(values, frob_op, err)
        lower, upper = tuple(lo), tuple(up)
    return ErrorEstimate(
        num_tests=num_tests,
        seed=seed,
        frob_op=frob_op,
        frob_approx=frob_approx,
        frob_residual=err,
        relative_error=relative,
        residual_samples=tuple(res_sq.tolist()),
        scree_lower=lower,
        scree_upper=upper,
    )
