"""Matrix-free estimates of the trace of an operator, with standard errors.

Four estimators, all measured in blocks of products and with probes addressed by
``(seed, index)`` (:mod:`curvsketch.sketch.noise`, streams :data:`STREAMS`), so an
estimate does not depend on ``block_size`` beyond rounding:

* ``"hutchinson"``: Girard–Hutchinson with Rademacher probes (Hutchinson, "A stochastic
  estimator of the trace of the influence matrix for Laplacian smoothing splines", Comm.
  Stat. Simul. Comput. 18(3), 1989; Girard, Numer. Math. 56, 1989): ``(1/N) Σ zₖᵀ A zₖ``;
  standard error = sample standard deviation / ``√N``.
* ``"hutch++"``: Meyer, Musco, Musco & Woodruff, "Hutch++: Optimal stochastic trace
  estimation", SOSA 2021, Algorithm 1: ``Q = orth(A S)`` from ``k`` sketch products, the
  exact ``tr(QᵀAQ)`` from ``k`` more, and Hutchinson on ``(I−QQᵀ)A(I−QQᵀ)`` with the rest.
* ``"xtrace"``: Epperly, Tropp & Webber, "XTrace: Making the most of every sample in
  stochastic trace estimation", SIAM J. Matrix Anal. Appl. 45(1), 2024, §2–3: every test
  vector serves both the low-rank basis of the others and the Hutchinson correction
  (:mod:`curvsketch.sketch.xtrace`, with its two kinds of test vectors, ``probes``).
* ``"krylov"``: Chen & Hallman, "Krylov-aware stochastic trace estimation", SIAM J. Matrix
  Anal. Appl. 44(3), 2023: the exact trace on a block Krylov space whose products are
  already spent building it, Hutchinson on the rest (:mod:`curvsketch.sketch.krylov_trace`).

Deflation by an :class:`~curvsketch.sketch.EighResult` ``U``: ``tr A = tr(UᵀAU) +
tr(PAP)`` with ``P = I − UUᵀ`` for any orthonormal ``U``; the first term is the sum of the
result's Rayleigh–Ritz values (known, no products) and all ``num_products`` go to the
remainder ``PAP``, whose spectrum has the top eigenvalues removed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from curvsketch.sketch.krylov_trace import KRYLOV_TRACE_STREAMS, krylov_plan, krylov_trace
from curvsketch.sketch.measure import check_finite
from curvsketch.sketch.noise import RademacherNoise
from curvsketch.sketch.result import EighResult
from curvsketch.sketch.validate import check_block_size, check_count, check_operator, check_seed
from curvsketch.sketch.xtrace import XTRACE_STREAM, xtrace

__all__ = [
    "STREAMS",
    "TRACE_METHODS",
    "TRACE_MIN_PRODUCTS",
    "TRACE_PROBES",
    "TraceEstimate",
    "trace",
]

#: Estimators :func:`trace` knows.
TRACE_METHODS = ("hutchinson", "hutch++", "xtrace", "krylov")
#: Random streams of the probes under the user seed.
STREAMS = {
    "hutchinson": "trace.hutchinson",
    "hutch++.sketch": "trace.hutch++.sketch",
    "hutch++.probes": "trace.hutch++.probes",
    "xtrace": XTRACE_STREAM,
    "krylov.start": KRYLOV_TRACE_STREAMS["start"],
    "krylov.probes": KRYLOV_TRACE_STREAMS["probes"],
}
#: Test vectors of each method (the first is the default).
TRACE_PROBES = {
    "hutchinson": ("rademacher",),
    "hutch++": ("rademacher",),
    "xtrace": ("sphere", "rademacher"),
    "krylov": ("rademacher",),
}
#: Fewest products each method can estimate from.
TRACE_MIN_PRODUCTS = {"hutchinson": 1, "hutch++": 3, "xtrace": 2, "krylov": 3}


@dataclass(frozen=True)
class TraceEstimate:
    """An estimate of ``tr(A)`` with its standard error.

    Attributes:
        value: the estimate (including the known part of a deflation).
        standard_error: estimated standard error; ``inf`` when there is no spread to
            estimate it from (one Hutchinson probe, one XTrace test vector), about zero when
            the estimate is exact (e.g. Hutch++/XTrace on a low-rank operator).
        num_products: operator products spent by this call (not counting those that made a
            deflating result).
        method: ``"hutchinson"``, ``"hutch++"``, ``"xtrace"`` or ``"krylov"``.
        deflated: eigenpairs deflated (``0`` without ``deflate``).
        probes: the test vectors (``"rademacher"`` or ``"sphere"``).
    """

    value: float
    standard_error: float
    num_products: int
    method: str
    deflated: int = 0
    probes: str = "rademacher"

    def __repr__(self) -> str:
        extra = f", deflated={self.deflated}" if self.deflated else ""
        return (
            f"TraceEstimate({self.value:.6g} ± {self.standard_error:.2g}, "
            f"method={self.method!r}, num_products={self.num_products}{extra})"
        )


class _Target:
    """The operator whose trace is estimated: ``A``, or ``PAP`` with ``P = I − UUᵀ``."""

    def __init__(self, op: Any, basis: torch.Tensor | None, block: int) -> None:
        self.op, self.basis, self.block = op, basis, block
        self.dim = int(op.shape[0])
        #: dimension of the space the target lives on (``D − k`` after deflation).
        self.rank = self.dim - (0 if basis is None else int(basis.shape[1]))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.basis is None else x - self.basis @ (self.basis.T @ x)

    def apply(self, x: torch.Tensor, what: str, start: int) -> torch.Tensor:
        """``P A P x`` for one block ``x`` (one operator call), checked."""
        stop = start + int(x.shape[1])
        ax = self.op @ self.project(x)
        if not isinstance(ax, torch.Tensor) or tuple(ax.shape) != tuple(x.shape):
            got = tuple(ax.shape) if isinstance(ax, torch.Tensor) else type(ax).__name__
            raise ValueError(
                f"trace: op @ x must return a tensor of shape {tuple(x.shape)}, got {got}"
            )
        return self.project(check_finite(ax, what, start, stop))

    def measure(
        self, columns: Callable[[int, int], torch.Tensor], count: int, what: str
    ) -> torch.Tensor:
        """``(D, count)`` products of the columns ``columns(i0, i1)``, in blocks."""
        out: torch.Tensor | None = None
        for start in range(0, count, self.block):
            stop = min(count, start + self.block)
            block = self.apply(columns(start, stop), what, start)
            if out is None:
                out = torch.empty((self.dim, count), dtype=block.dtype, device=block.device)
            out[:, start:stop] = block
        assert out is not None
        return out


def _mean_and_error(samples: torch.Tensor) -> tuple[float, float]:
    n = int(samples.shape[0])
    err = float(samples.std() / math.sqrt(n)) if n > 1 else math.inf
    return float(samples.mean()), err


def _hutchinson(
    target: _Target, n: int, seed: int, stream: str, what: str, q: torch.Tensor | None = None
) -> torch.Tensor:
    """The ``n`` samples ``xₖᵀ(PAP)xₖ`` (float64), ``xₖ = (I − QQᵀ)zₖ`` for Rademacher
    ``zₖ`` (``Q`` = none without ``q``)."""
    op = target.op
    probes = RademacherNoise(n, target.dim, seed, stream)
    samples = torch.empty(n, dtype=torch.float64, device=op.device)
    for start in range(0, n, target.block):
        stop = min(n, start + target.block)
        x = probes.columns(start, stop, dtype=op.dtype, device=op.device)
        if q is not None:
            x = x - q @ (q.T @ x)
        samples[start:stop] = (x * target.apply(x, what, start)).sum(0, dtype=torch.float64)
    return samples


def _hutchpp(target: _Target, num_products: int, seed: int) -> tuple[float, float, int]:
    k = num_products // 3
    n = num_products - 2 * k
    op = target.op
    sketch = RademacherNoise(k, target.dim, seed, STREAMS["hutch++.sketch"])
    y = target.measure(
        lambda a, b: sketch.columns(a, b, dtype=op.dtype, device=op.device),
        k,
        "op @ S (hutch++ sketch)",
    )
    q = torch.linalg.qr(y).Q
    del y
    z = target.measure(lambda a, b: q[:, a:b], k, "op @ Q (hutch++ basis)")
    known = float((q * z).sum(dtype=torch.float64))
    del z
    # xᵀBx with x = (I−QQᵀ)g is an unbiased sample of tr((I−QQᵀ)B(I−QQᵀ)) = tr B − tr QᵀBQ.
    what = "op @ (I-QQ^T)G (hutch++ probes)"
    samples = _hutchinson(target, n, seed, STREAMS["hutch++.probes"], what, q)
    mean, err = _mean_and_error(samples)
    return known + mean, err, 2 * k + n


def _deflation_basis(deflate: Any, op: Any) -> tuple[torch.Tensor | None, float]:
    """The orthonormal ``U`` of ``deflate`` (op dtype/device) and ``tr(UᵀAU) = Σθ``."""
    if not isinstance(deflate, EighResult):
        raise TypeError(
            f"trace: deflate must be an EighResult (from seigh) or None, got "
            f"{type(deflate).__name__}"
        )
    dim = int(op.shape[0])
    if deflate.dim != dim:
        raise ValueError(
            f"trace: deflate has eigenvectors of length {deflate.dim} but the operator is "
            f"{dim} × {dim}: deflate with a result computed on this operator"
        )
    if deflate.ritz_values is None:
        raise ValueError(
            f"trace: deflate is a {deflate.recovery!r} result, whose eigenvalues are not "
            "Rayleigh quotients uᵀAu, so Σλ is not the trace of A on its eigenvectors and the "
            "deflated estimate would be biased; deflate with a recovery='hmt' or 'krylov' "
            "result (they keep the Rayleigh–Ritz values) or pass deflate=None"
        )
    k = len(deflate)
    if k == 0:
        return None, 0.0
    if k > dim:
        raise ValueError(f"trace: deflate has {k} eigenvectors but D = {dim}")
    basis = deflate.rows(slice(None))
    basis = torch.as_tensor(basis).to(dtype=op.dtype, device=op.device)
    error = deflate.orthonormality_error()
    if error is None:
        g = basis.T.to(torch.float64) @ basis.to(torch.float64)
        error = float((g - torch.eye(k, dtype=g.dtype, device=g.device)).abs().max())
    tol = math.sqrt(torch.finfo(deflate.dtype).eps)
    if not error <= tol:
        raise ValueError(
            f"trace: deflate's eigenvectors are not orthonormal (max |UᵀU − I| = {error:.2g} "
            f"> {tol:.2g}), so tr(UᵀAU) + tr(PAP) would not be tr(A); deflate with the result "
            "as seigh returned it (or its .top(k))"
        )
    return basis, float(deflate.ritz_values.to(torch.float64).sum())


def trace(
    op: Any,
    num_products: int,
    *,
    method: str = "xtrace",
    seed: int = 0,
    block_size: int | None = None,
    deflate: EighResult | None = None,
    probes: str | None = None,
) -> TraceEstimate:
    """Estimate ``tr(A)`` of a square operator from ``num_products`` products.

    Methods (see the module docstring for the references):

    * ``"hutchinson"``: ``N`` Rademacher probes; error ``∝ ‖A‖_F/√N``.
    * ``"hutch++"``: ``k = ⌊N/3⌋`` sketch products, ``k`` for ``tr(QᵀAQ)``, the remaining
      ``N − 2k`` (``k``, ``k + 1`` or ``k + 2``: a remainder of ``N`` by 3 goes to the
      Hutchinson part) as probes on the residual ``(I−QQᵀ)A(I−QQᵀ)``; the standard error
      is that of the Hutchinson part. Exact (to rounding) on an operator of rank
      ``≤ ⌊N/3⌋``.
    * ``"xtrace"`` (default): ``m = ⌊N/2⌋`` test vectors, ``2m`` products (an odd ``N``
      leaves one unspent; :attr:`TraceEstimate.num_products` says so); the standard error
      is the paper's, the spread of the ``m`` leave-one-out estimates over ``√m`` (a
      heuristic that tends to be small, as the ``m`` estimates share most of their basis:
      measured ~0.75× the true spread (two of them cover the truth in 87 % of seeds) on a
      ``1/i`` spectrum (D = 120, N = 30), ~0.6× (74 %) with more outliers than test vectors
      (40 eigenvalues in [10, 50] over a bulk in [0, 1], D = 400, N = 60); Hutchinson's and
      Hutch++'s cover at ~95 % there). Exact on an operator of rank ``≤ m − 1``.
      Usually more accurate than Hutch++ at equal products (the paper's experiments).
    * ``"krylov"``: the exact trace on a block Krylov space of width ``b ≈ N/20``, whose
      products give ``tr(QᵀAQ)`` as it is built, and Rademacher probes on
      ``(I−QQᵀ)A(I−QQᵀ)`` with the rest; all ``N`` products spent. The depth is adaptive:
      ``⌈0.4N⌉`` pilot probes, measured first, say after each step how much of the
      residual's Frobenius norm it removed, and the space grows while that beats the probes
      it costs (:mod:`~curvsketch.sketch.krylov_trace`), so a decaying spectrum gets a deep
      space and a flat one more probes. The standard error is Hutchinson's on the
      residual: honest (91–97 % of 2-SE intervals covered the truth in our measurements).
      Better than XTrace where the spectrum decays (``1/i``: RMS 0.74–0.89× XTrace's at
      N = 40) and on the 7k MLP of ``benchmarks/results/estimators.md`` at N = 30, 60 and
      120; worse where more outliers than ``b`` crowd together (20 in [20, 55] over a bulk
      in [0, 1], N = 50: narrow steps cannot separate them; RMS > 3× XTrace's, tested).
      Exact on an operator of rank ``≤ (q − 1)b`` once the rule takes ``q`` steps (it
      stops at a residual of rounding size).

    All products are made in blocks of ``block_size`` columns; the probes are a function of
    ``(seed, index)``, so ``block_size`` does not change the estimate beyond rounding.

    Args:
        op: square ``D × D`` operator (``.shape``, ``.dtype``, ``.device``, ``@`` on a
            ``(D, m)`` block) or a tensor/array. Hutch++, XTrace and Krylov need no symmetry.
        num_products: operator products to spend (``≥ 1`` for Hutchinson, ``≥ 3`` for
            Hutch++ and Krylov, ``≥ 2`` for XTrace).
        method: ``"hutchinson"``, ``"hutch++"``, ``"xtrace"`` or ``"krylov"``.
        seed: seed of the probes; equal seeds give equal estimates.
        block_size: columns per operator call (default ``min(64, num_products)``).
        deflate: optional :class:`EighResult` of this operator with Rayleigh–Ritz values
            (``recovery="hmt"`` or ``"krylov"``), orthonormal eigenvectors ``U`` (``k``).
            The estimate is ``Σθ + (estimate of tr(PAP))``, ``P = I − UUᵀ``, all products
            spent on ``PAP`` (each costs one product with ``A`` and ``O(Dk)`` flops).
        probes: test vectors (:data:`TRACE_PROBES`; default the method's first):
            ``"rademacher"`` for Hutchinson, Hutch++ and Krylov; for XTrace ``"sphere"`` (the
            paper's improved vectors) or ``"rademacher"`` (random signs, plain estimator).

    Returns:
        :class:`TraceEstimate`.

    Raises:
        ValueError: non-square operator; bad ``method``, ``probes``, ``num_products`` (too
            few for the method, or a sketch larger than the dimension), ``seed`` or
            ``block_size``; a
            ``deflate`` of another dimension, without Ritz values or not orthonormal;
            non-finite products (the error names the block).
        TypeError: ``deflate`` is not an :class:`EighResult`.
    """
    op = check_operator(op, "trace")
    if len(op.shape) != 2 or op.shape[0] != op.shape[1]:
        raise ValueError(
            f"trace needs a square operator, got shape {tuple(op.shape)}: only a square "
            "matrix has a trace"
        )
    if method not in TRACE_METHODS:
        raise ValueError(
            f"method={method!r} is not a trace estimator; use one of {', '.join(TRACE_METHODS)}"
        )
    if probes is None:
        probes = TRACE_PROBES[method][0]
    if probes not in TRACE_PROBES[method]:
        raise ValueError(
            f"probes={probes!r} is not available for {method}; use one of "
            f"{', '.join(map(repr, TRACE_PROBES[method]))}"
        )
    minimum = TRACE_MIN_PRODUCTS[method]
    num_products = check_count(
        "num_products", num_products, minimum, f"operator products; {method} needs {minimum}"
    )
    seed = check_seed(seed)
    block = check_block_size(block_size, num_products)
    basis, known = (None, 0.0) if deflate is None else _deflation_basis(deflate, op)
    target = _Target(op, basis, block)
    dim = target.dim
    if method in ("xtrace", "krylov") and num_products // 2 > target.rank:
        left = "" if basis is None else f" left after deflating {basis.shape[1]} eigenpairs"
        what = (
            f"gives xtrace {num_products // 2} test vectors, more than"
            if method == "xtrace"
            else "is more than krylov can use on"  # its space would hold them all
        )
        raise ValueError(
            f"num_products={num_products} {what} the {target.rank} dimensions{left}: use "
            f"num_products <= {2 * target.rank} (the exact trace costs {dim} products: op @ I)"
        )
    if method == "hutch++" and num_products // 3 > dim:
        raise ValueError(
            f"num_products={num_products} gives hutch++ a sketch of {num_products // 3} "
            f"vectors, more than D = {dim}: use num_products <= {3 * dim} (the exact trace "
            f"costs {dim} products: op @ I)"
        )
    if method == "hutchinson":
        samples = _hutchinson(target, num_products, seed, STREAMS["hutchinson"], "op @ z (probes)")
        value, error = _mean_and_error(samples)
        spent = num_products
    elif method == "hutch++":
        value, error, spent = _hutchpp(target, num_products, seed)
    elif method == "xtrace":
        value, error, spent = xtrace(target, num_products, seed, probes)
    else:
        width, steps, pilots = krylov_plan(num_products, target.rank)
        value, error, spent, _ = krylov_trace(target, num_products, seed, width, steps, pilots)
    return TraceEstimate(
        value=known + value,
        standard_error=error,
        num_products=spent,
        method=method,
        deflated=0 if basis is None else int(basis.shape[1]),
        probes=probes,
    )
