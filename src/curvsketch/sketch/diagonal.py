"""Matrix-free estimates of the diagonal of an operator, with per-entry standard errors.

Hutchinson's diagonal estimator (Bekas, Kokiopoulou, Saad, "An estimator for the diagonal
of a matrix", Appl. Numer. Math. 57(11–12), 2007, §2): for probe vectors ``z_k`` with
independent Rademacher (``±1``) entries,

    d̂ = (1/N) Σ_k z_k ⊙ (A z_k),

is unbiased, ``E[d̂_i] = A_ii``, and since ``z_{k,i}² = 1`` each sample is
``A_ii + Σ_{j≠i} A_ij z_{k,i} z_{k,j}``: the variance of one sample is ``Σ_{j≠i} A_ij²``
(the off-diagonal mass of row ``i``), so a diagonal matrix is recovered exactly from one
probe. The standard error of entry ``i`` is estimated from the ``N`` samples themselves
(sample standard deviation over ``√N``).

Probes are addressed by ``(seed, index)`` (:class:`curvsketch.sketch.RademacherNoise`,
stream :data:`STREAM`), so the estimate does not depend on ``block_size`` (the probes per
operator call) beyond rounding, and a block of probes can be computed anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from curvsketch.sketch.measure import check_finite
from curvsketch.sketch.noise import RademacherNoise
from curvsketch.sketch.validate import check_block_size, check_count, check_operator, check_seed

__all__ = ["DIAGONAL_METHODS", "STREAM", "DiagonalEstimate", "diagonal"]

#: Stream of the probe vectors under the user seed.
STREAM = "diagonal.hutchinson"
#: Estimators :func:`diagonal` knows.
DIAGONAL_METHODS = ("hutchinson",)


@dataclass(frozen=True, repr=False, eq=False)
class DiagonalEstimate:
    """An estimate of ``diag(A)`` with per-entry standard errors.

    Attributes:
        values: ``(D,)`` estimate of the diagonal, in the operator's dtype and device.
        standard_errors: ``(D,)`` estimated standard error of each entry (sample standard
            deviation of the probes over ``√N``); ``inf`` with a single probe (no spread to
            estimate from), rounding-level where every probe gave the same value (e.g. a
            diagonal operator).
        num_products: operator products spent (probe vectors, ``N``).
        method: ``"hutchinson"``.
    """

    values: torch.Tensor
    standard_errors: torch.Tensor
    num_products: int
    method: str

    def __repr__(self) -> str:
        return (
            f"DiagonalEstimate(D={self.values.shape[0]}, method={self.method!r}, "
            f"num_products={self.num_products}, "
            f"max standard error={float(self.standard_errors.max()):.3g})"
        )


def diagonal(
    op: Any,
    num_products: int,
    *,
    method: str = "hutchinson",
    seed: int = 0,
    block_size: int | None = None,
) -> DiagonalEstimate:
    """Estimate ``diag(A)`` of a square operator from ``num_products`` products.

    Hutchinson's estimator with Rademacher probes (Bekas, Kokiopoulou, Saad 2007, §2; see
    the module docstring), measured in blocks of ``block_size`` probes per operator call.
    The error of an entry falls as ``1/√N``; its size is the off-diagonal mass
    ``(Σ_{j≠i} A_ij²)^{1/2}`` of its row, which :attr:`DiagonalEstimate.standard_errors`
    estimates. For a GGN diagonal as a mask score, a few dozen probes rank the large
    entries; the standard errors say how far to trust the small ones.

    Args:
        op: square ``D × D`` operator (``.shape``, ``.dtype``, ``.device``, ``@`` on a
            ``(D, m)`` block) or a tensor/array.
        num_products: ``N >= 1``, the number of probe vectors (one product each).
        method: ``"hutchinson"``.
        seed: seed of the probes; equal seeds give bitwise-equal probes.
        block_size: probes per operator call (default ``min(64, N)``); does not change the
            estimate beyond rounding.

    Returns:
        :class:`DiagonalEstimate`.

    Raises:
        ValueError: a non-square operator, bad ``num_products``, ``method``, ``seed`` or
            ``block_size``, or non-finite products (the error names the probes).
    """
    op = check_operator(op, "diagonal")
    if len(op.shape) != 2 or op.shape[0] != op.shape[1]:
        raise ValueError(
            f"diagonal needs a square operator, got shape {tuple(op.shape)}: only a square "
            "matrix has a diagonal to estimate"
        )
    num_products = check_count("num_products", num_products, 1, "probe vectors, one product each")
    if method not in DIAGONAL_METHODS:
        raise ValueError(
            f"method={method!r} is not a diagonal estimator; use one of "
            f"{', '.join(DIAGONAL_METHODS)}"
        )
    seed = check_seed(seed)
    block = check_block_size(block_size, num_products)
    dim = int(op.shape[0])
    probes = RademacherNoise(num_products, dim, seed, STREAM)
    # Running mean and sum of squared deviations in float64, merged block by block
    # (Chan, Golub, LeVeque, "Algorithms for computing the sample variance", 1983).
    mean = torch.zeros(dim, dtype=torch.float64, device=op.device)
    m2 = torch.zeros(dim, dtype=torch.float64, device=op.device)
    count = 0
    for start in range(0, num_products, block):
        stop = min(num_products, start + block)
        z = probes.columns(start, stop, dtype=op.dtype, device=op.device)
        az = check_finite(op @ z, "op @ z (Hutchinson probes)", start, stop)
        samples = (z * az).to(torch.float64)
        n_b = stop - start
        mean_b = samples.mean(dim=1)
        m2_b = (samples - mean_b[:, None]).square().sum(dim=1)
        delta = mean_b - mean
        total = count + n_b
        mean += delta * (n_b / total)
        m2 += m2_b + delta.square() * (count * n_b / total)
        count = total
    if count > 1:
        errors = (m2 / (count - 1)).sqrt() / math.sqrt(count)
    else:
        errors = torch.full_like(mean, math.inf)
    return DiagonalEstimate(
        values=mean.to(op.dtype),
        standard_errors=errors.to(op.dtype),
        num_products=num_products,
        method=method,
    )
