"""Spectral density of a symmetric operator by stochastic Lanczos quadrature (SLQ).

The spectral measure of a symmetric ``D × D`` operator ``A`` with eigenvalues ``λ_i`` is
``μ = (1/D) Σ_i δ(λ_i)``, so ``∫ f dμ = tr f(A) / D``. Stochastic Lanczos quadrature
(Ubaru, Chen & Saad, "Fast estimation of tr(f(A)) via stochastic Lanczos quadrature",
SIAM J. Matrix Anal. Appl. 38(4), 2017, §3) estimates it from ``P`` random probes: for a
unit probe ``q_p``, ``m`` Lanczos steps started at ``q_p`` give a tridiagonal ``T_p`` with
eigenvalues ``θ_pj`` (Ritz values, the *nodes*) and eigenvectors ``y_pj``, and
``q_pᵀ f(A) q_p ≈ Σ_j τ_pj f(θ_pj)`` with ``τ_pj = (e₁ᵀ y_pj)²`` (the *weights*): the
``m``-point Gauss quadrature of the measure ``Σ_i (q_pᵀ u_i)² δ(λ_i)``, exact for
polynomials of degree ``≤ 2m − 1`` (Golub & Meurant, "Matrices, Moments and Quadrature",
1994). Averaging over probes,

    ∫ f dμ ≈ (1/P) Σ_p Σ_j τ_pj f(θ_pj),

and the spread of the per-probe sums gives a standard error. Ghorbani, Krishnan & Xiao
("An investigation into neural net optimization via Hessian eigenvalue density", ICML
2019, §2–3) use this for network Hessians, drawn as the nodes broadened by a Gaussian.

Probes are Rademacher vectors (``±1`` entries; :class:`curvsketch.sketch.RademacherNoise`,
stream :data:`STREAM`, probe ``p`` addressed by ``(seed, p)``), normalised: ``q = z/√D``.
Since ``‖z‖² = D`` exactly, ``D·E[qᵀ f(A) q] = E[zᵀ f(A) z] = tr f(A)``: unbiased, and
each probe's weights sum to 1, so the estimated measure has total mass 1 exactly.

All probes advance together (:func:`curvsketch.sketch.lanczos.batched_lanczos`): one
operator call on a ``(D, P)`` block per Lanczos step, so ``m`` passes over the data for
any number of probes (PyHessian's ``density()`` makes ``P·m`` calls of one vector each).
Memory: the ``P`` bases, ``P·m·D`` numbers in the operator's dtype.

Deflation (``deflate=`` an :class:`~curvsketch.sketch.EighResult` with ``k`` orthonormal
eigenvectors ``U``) resolves outliers, which SLQ smears into a few weak nodes: the
measure becomes ``(1/D) Σ_{i≤k} δ(λ_i)`` (the *spikes*) plus SLQ on the remainder
``P A P``, ``P = I − UUᵀ``, restricted to ``range(P)``: probes ``Pz`` and every Lanczos
vector are kept orthogonal to ``U``, so the ``k`` zero eigenvalues that the projection
puts on ``range(U)`` are never sampled, and the remainder's weights are scaled to sum to
``(D − k)/D`` per probe. This is exact when ``U`` spans an invariant subspace; the trace
split ``tr A = Σ uᵢᵀAuᵢ + tr(PAP)`` holds for any orthonormal ``U``, so the spikes are the
Ritz values ``θ_i = uᵢᵀAuᵢ`` where the result has them (``"hmt"``, ``"krylov"``) and its
eigenvalues otherwise. With deflation, ``(D − k)·qᵀ f q`` for ``q = Pz/‖Pz‖`` is a ratio
estimator of ``tr(P f P)`` (``‖Pz‖²`` is ``D − k`` only on average): its relative bias
is ``O(k/D²)``, far below the probe noise ``O(1/√(P·D))``; the total mass stays exactly 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from curvsketch.sketch.lanczos import batched_lanczos, ritz_quadrature
from curvsketch.sketch.noise import RademacherNoise
from curvsketch.sketch.result import EighResult
from curvsketch.sketch.symmetry import check_symmetric
from curvsketch.sketch.validate import check_count, check_operator, check_seed

__all__ = ["DEFAULT_GRID_POINTS", "STREAM", "SpectralDensity", "spectral_density"]

#: Stream of the probe vectors under the user seed.
STREAM = "density.slq"
#: Points of the default grid.
DEFAULT_GRID_POINTS = 1000
#: Default ``σ`` is the node range over this (Ghorbani, Krishnan & Xiao 2019 use ~1/200).
SIGMA_FRACTION = 200.0
#: The default grid extends this many ``σ`` beyond the extreme nodes (mass lost < 1e-8).
GRID_PAD_SIGMAS = 6.0
_CHUNK = 2**22  # grid points × nodes per temporary block of the broadening


def _check_sigma(sigma: Any) -> float:
    try:
        if isinstance(sigma, bool | str | bytes):
            raise TypeError
        value = float(sigma)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"sigma must be a positive number (Gaussian width), got {sigma!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"sigma must be > 0 and finite (the width of the Gaussian broadening), got {sigma}"
        )
    return value


def _check_grid(grid: Any, device: torch.device) -> torch.Tensor:
    try:
        g = torch.as_tensor(grid, dtype=torch.float64, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"grid must be a 1-D sequence of real numbers: {err}") from None
    if g.ndim != 1 or g.shape[0] < 1:
        raise ValueError(
            f"grid must be a non-empty 1-D tensor of points, got shape {tuple(g.shape)}; "
            "flatten it (e.g. torch.linspace(lo, hi, n))"
        )
    if not bool(torch.isfinite(g).all()):
        raise ValueError("grid has NaN or Inf entries; pass finite points")
    return g


def _centres(
    nodes: torch.Tensor, weights: torch.Tensor, spikes: torch.Tensor, dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All atoms of the estimated measure with their masses (summing to 1)."""
    p = nodes.shape[0]
    mass = torch.cat([weights.reshape(-1) / p, torch.full_like(spikes, 1.0 / dim)])
    return torch.cat([nodes.reshape(-1), spikes]), mass


def _default_sigma(points: torch.Tensor) -> float:
    lo, hi = float(points.min()), float(points.max())
    if hi > lo:
        return (hi - lo) / SIGMA_FRACTION
    return max(abs(lo), abs(hi)) / SIGMA_FRACTION or 1.0  # one point (e.g. A = cI, or 0)


@dataclass(frozen=True, repr=False, eq=False)
class SpectralDensity:
    """An SLQ estimate of the spectral measure ``(1/D) Σ δ(λ_i)`` of a symmetric operator.

    The measure is ``(1/P) Σ_p Σ_j weights[p, j] δ(nodes[p, j]) + (1/D) Σ_i δ(spikes[i])``.

    Attributes:
        nodes: ``(P, m)`` float64 Ritz values per probe. A probe that broke down after
            ``s < m`` steps (invariant Krylov space: its quadrature is exact) has weight 0
            in its last ``m − s`` entries and repeats its heaviest node there.
        weights: ``(P, m)`` float64 squared first components of the tridiagonal's
            eigenvectors; each row sums to 1, or to ``(D − k)/D`` with ``k`` spikes.
        spikes: ``(k,)`` float64 deflated eigenvalues, weight ``1/D`` each (empty if none).
        dim: ``D``.
        num_probes: ``P``.
        lanczos_steps: ``m``, Lanczos steps per probe requested (rows are ``m`` long, or
            ``min(m, D − k)`` with ``k`` deflated pairs).
        num_products: operator products spent (vectors; ``≤ P·m``).
        grid: ``(G,)`` float64 points of :attr:`values`.
        values: ``(G,)`` float64 Gaussian-broadened density on ``grid``
            (:meth:`broaden` with the ``grid``/``sigma`` of the call).
        sigma: width of the broadening in :attr:`values`.
        steps: ``(P,)`` int64 Lanczos steps each probe took.
        num_calls: operator calls (one per Lanczos step, for all probes at once).
    """

    nodes: torch.Tensor
    weights: torch.Tensor
    spikes: torch.Tensor
    dim: int
    num_probes: int
    lanczos_steps: int
    num_products: int
    grid: torch.Tensor
    values: torch.Tensor
    sigma: float = 0.0
    steps: torch.Tensor | None = None
    num_calls: int = 0

    def __repr__(self) -> str:
        return (
            f"SpectralDensity(D={self.dim}, num_probes={self.num_probes}, "
            f"lanczos_steps={self.lanczos_steps}, spikes={self.spikes.shape[0]}, "
            f"num_products={self.num_products}, sigma={self.sigma:.3g})"
        )

    def atoms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The estimated measure as atoms: ``(points, masses)``, 1-D, masses sum to 1."""
        return _centres(self.nodes, self.weights, self.spikes, self.dim)

    def broaden(
        self, grid: Any = None, sigma: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The measure convolved with a Gaussian of width ``sigma``, on ``grid``.

        ``ρ(x) = Σ_atoms mass · exp(−(x − c)²/2σ²)/(σ√(2π))`` integrates to 1 over the
        real line. It is evaluated pointwise on ``grid``, not renormalised there, so its
        integral over a finite grid is the mass inside it (≥ 1 − 1e-8 on the default grid,
        up to the quadrature of the grid). Log-scale plotting is the caller's business
        (``ρ`` is positive; add a floor before taking a log).

        Args:
            grid: 1-D points (default :data:`DEFAULT_GRID_POINTS` points from the
                smallest to the largest atom, padded by :data:`GRID_PAD_SIGMAS` ``σ``).
            sigma: ``σ > 0`` (default: the atoms' range over :data:`SIGMA_FRACTION`, as
                Ghorbani et al. 2019; ``max|atom|/200``, or 1, if all atoms coincide).

        Returns:
            ``(grid, density)``, float64 tensors of equal length.

        Raises:
            ValueError: ``sigma <= 0`` or a grid that is not 1-D.
        """
        points, mass = self.atoms()
        sigma = _default_sigma(points) if sigma is None else _check_sigma(sigma)
        if grid is None:
            lo = float(points.min()) - GRID_PAD_SIGMAS * sigma
            hi = float(points.max()) + GRID_PAD_SIGMAS * sigma
            grid = torch.linspace(lo, hi, DEFAULT_GRID_POINTS, dtype=torch.float64)
        grid = _check_grid(grid, points.device)
        keep = mass > 0
        points, mass = points[keep], mass[keep]
        out = torch.zeros_like(grid)
        step = max(1, _CHUNK // max(1, points.shape[0]))
        norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
        for i in range(0, grid.shape[0], step):
            z = (grid[i : i + step, None] - points[None, :]) / sigma
            out[i : i + step] = torch.exp(-0.5 * z.square()) @ mass * norm
        return grid, out

    def integrate(self, f: Callable[[torch.Tensor], Any]) -> tuple[float, float]:
        """``∫ f dμ ≈ tr f(A)/D`` and its standard error over the probes.

        Per probe ``e_p = Σ_j w_pj f(θ_pj) + (1/D) Σ_i f(spike_i)`` (the spikes are
        deterministic); the estimate is the mean of ``e_p`` and the standard error their
        sample standard deviation over ``√P`` (``inf`` for one probe). ``f = 1`` gives 1
        exactly (to rounding); ``f(x) = x`` gives ``trace/D``, ``f(x) = x²`` gives
        ``‖A‖_F²/D``. The Lanczos part is exact for polynomials of degree ``≤ 2m − 1``.

        Args:
            f: maps a float64 tensor to a tensor of the same shape (or a broadcastable
                scalar), elementwise.

        Returns:
            ``(estimate, standard_error)`` as floats.
        """

        def apply(x: torch.Tensor) -> torch.Tensor:
            y = torch.as_tensor(f(x), dtype=torch.float64, device=x.device)
            try:
                return torch.broadcast_to(y, x.shape)
            except RuntimeError:
                raise ValueError(
                    f"f must map a tensor of shape {tuple(x.shape)} to one of the same shape "
                    f"(elementwise), got shape {tuple(y.shape)}"
                ) from None

        fw = torch.where(self.weights > 0, self.weights * apply(self.nodes), 0.0)
        per_probe = fw.sum(dim=1)
        if self.spikes.numel():
            per_probe = per_probe + apply(self.spikes).sum() / self.dim
        p = per_probe.shape[0]
        mean = float(per_probe.mean())
        err = float(per_probe.std() / math.sqrt(p)) if p > 1 else math.inf
        return mean, err

    def moments(self, n: int = 2) -> list[tuple[float, float]]:
        """``[(∫ λ^i dμ, standard error) for i = 1..n]``: ``trace/D``, ``‖A‖_F²/D``, …"""
        n = check_count("n", n, 1, "the highest moment")
        return [self.integrate(lambda x, i=i: x**i) for i in range(1, n + 1)]

    def wasserstein(self, eigenvalues: Any) -> float:
        """1-Wasserstein distance to the uniform measure on ``eigenvalues`` (e.g. exact).

        ``W₁ = ∫ |F(x) − G(x)| dx`` for the two cumulative distribution functions.
        """
        exact = torch.as_tensor(eigenvalues, dtype=torch.float64).reshape(-1).cpu()
        if exact.numel() == 0:
            raise ValueError("eigenvalues is empty; pass the spectrum to compare with")
        points, mass = (t.cpu() for t in self.atoms())
        allx = torch.cat([points, exact])
        allm = torch.cat([mass, torch.full_like(exact, -1.0 / exact.numel())])
        order = torch.argsort(allx)
        cdf_diff = torch.cumsum(allm[order], 0)[:-1]
        gaps = torch.diff(allx[order])
        return float((cdf_diff.abs() * gaps).sum())


def _deflation(deflate: Any, op: Any, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(deflate, EighResult):
        raise TypeError(
            f"deflate must be an EighResult (e.g. from seigh), got {type(deflate).__name__}"
        )
    if deflate.dim != dim:
        raise ValueError(
            f"deflate has eigenvectors of length {deflate.dim} but the operator is {dim} × "
            f"{dim}: pass the eigendecomposition of this operator"
        )
    k = len(deflate)
    if k >= dim:
        raise ValueError(
            f"deflate has {k} eigenpairs for a {dim} × {dim} operator: that is the whole "
            "spectrum (no remainder to estimate); deflate fewer (e.g. deflate.top(k))"
        )
    u = deflate.eigenvectors.to(dtype=op.dtype, device=op.device)
    gram_err = float((u.T @ u - torch.eye(k, dtype=u.dtype, device=u.device)).abs().max())
    eps = max(torch.finfo(deflate.dtype).eps, torch.finfo(op.dtype).eps)
    if k and gram_err > 1e3 * eps * max(1.0, math.sqrt(dim)):
        raise ValueError(
            f"deflate's eigenvectors are not orthonormal (max |UᵀU − I| = {gram_err:.2e}): "
            "deflation needs orthonormal U"
        )
    values = deflate.ritz_values if deflate.ritz_values is not None else deflate.eigenvalues
    return u, values.to(dtype=torch.float64, device=op.device)


def spectral_density(
    op: Any,
    *,
    num_probes: int,
    lanczos_steps: int,
    grid: Any = None,
    sigma: float | None = None,
    deflate: EighResult | None = None,
    seed: int = 0,
    check_symmetry: bool = True,
) -> SpectralDensity:
    """Estimate the spectral density of a symmetric operator by SLQ (see the module doc).

    Ubaru, Chen & Saad, SIMAX 38(4), 2017, §3; Ghorbani, Krishnan & Xiao, ICML 2019, §2–3.
    All ``num_probes`` Rademacher probes advance together: ``lanczos_steps`` operator calls
    on ``(D, num_probes)`` blocks, with full reorthogonalisation per probe (classical
    Gram–Schmidt, a second pass when the first cancelled much). Memory
    ``num_probes · lanczos_steps · D`` numbers in the operator's dtype (the bases).

    Args:
        op: symmetric ``D × D`` operator (``.shape``, ``.dtype``, ``.device``, ``@`` on a
            ``(D, P)`` block) or a tensor/array.
        num_probes: ``P >= 1`` random probes; the standard error falls as ``1/√P``.
        lanczos_steps: ``1 <= m <= D`` steps (quadrature nodes) per probe; the density's
            resolution improves with ``m`` (exact moments up to degree ``2m − 1`` per probe).
        grid: points for :attr:`SpectralDensity.values` (default: see
            :meth:`SpectralDensity.broaden`).
        sigma: Gaussian width ``> 0`` (default: node range / 200).
        deflate: optional :class:`EighResult` of ``op`` (``k < D`` orthonormal
            eigenvectors): its eigenvalues become spikes (weight ``1/D``; its Ritz values
            where it has them) and SLQ runs on the remainder.
        seed: seed of the probes (probe ``p`` is the same for any ``num_probes > p``).
        check_symmetry: first compare ``uᵀAv`` with ``vᵀAu``
            (:func:`curvsketch.sketch.symmetry.check_symmetric`: one call, two products, not
            counted in ``num_products``); Lanczos quadrature is meaningless otherwise.

    Returns:
        :class:`SpectralDensity`.

    Raises:
        AsymmetricOperatorError: ``op`` is not symmetric.
        ValueError: a non-square operator, bad ``num_probes``, ``lanczos_steps``, ``seed``,
            ``sigma`` or ``grid``, ``deflate`` of the wrong size, non-orthonormal, or the
            whole spectrum, or non-finite products (the error names the Lanczos step).
    """
    op = check_operator(op, "spectral_density")
    if len(op.shape) != 2 or op.shape[0] != op.shape[1]:
        raise ValueError(
            f"spectral_density needs a square (symmetric) operator, got shape {tuple(op.shape)}"
        )
    dim = int(op.shape[0])
    num_probes = check_count("num_probes", num_probes, 1, "random probe vectors")
    lanczos_steps = check_count("lanczos_steps", lanczos_steps, 1, "Lanczos steps per probe")
    if lanczos_steps > dim:
        raise ValueError(
            f"lanczos_steps={lanczos_steps} exceeds the dimension D={dim}: a Krylov space has "
            f"at most D dimensions; use lanczos_steps <= {dim}"
        )
    seed = check_seed(seed)
    if sigma is not None:
        sigma = _check_sigma(sigma)
    if grid is not None:
        grid = _check_grid(grid, torch.device("cpu"))
    u, spikes, k = None, torch.zeros(0, dtype=torch.float64, device=op.device), 0
    if deflate is not None:
        u, spikes = _deflation(deflate, op, dim)
        k = int(spikes.shape[0])
    if not isinstance(check_symmetry, bool):
        raise ValueError(f"check_symmetry must be True or False, got {check_symmetry!r}")
    if check_symmetry:
        check_symmetric(op, "spectral_density")
    z = RademacherNoise(num_probes, dim, seed, STREAM).columns(
        0, num_probes, dtype=op.dtype, device=op.device
    )
    run = batched_lanczos(op, z, lanczos_steps, orthogonal_to=u)
    nodes, weights = ritz_quadrature(run, (dim - k) / dim)
    partial = SpectralDensity(
        nodes=nodes,
        weights=weights,
        spikes=spikes,
        dim=dim,
        num_probes=num_probes,
        lanczos_steps=lanczos_steps,
        num_products=run.num_products,
        grid=torch.zeros(0, dtype=torch.float64),
        values=torch.zeros(0, dtype=torch.float64),
        steps=run.steps,
        num_calls=run.num_calls,
    )
    points, _ = partial.atoms()
    sigma = _default_sigma(points) if sigma is None else sigma
    grid, values = partial.broaden(grid, sigma)
    return replace(partial, grid=grid, values=values, sigma=sigma)
