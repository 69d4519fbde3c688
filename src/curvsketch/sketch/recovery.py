"""Recoveries: from assembled sketches to a low-rank decomposition (pure tensor code).

Each function takes the full sketches as tensors (plus the test operators that made them,
which are cheap to rebuild from their seeds) and returns factors; none of them touches the
operator. A store layer can therefore measure blocks with
:func:`curvsketch.sketch.measure.measure_block`, assemble ``Y`` and ``Z`` on disk, and
call these afterwards. Test operators are applied to whole blocks of ``Q``'s columns
(batched transforms), never one row or column at a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import NamedTuple

import torch

from curvsketch.sketch.noise import NoiseOperator
from curvsketch.sketch.residuals import column_residual_norms, norm_estimate, residual_floor

__all__ = [
    "PSD_TOLERANCE",
    "Factors",
    "IndefiniteOperatorError",
    "apply_test_operators",
    "core_solve",
    "eigh_by_magnitude",
    "orthonormal_basis",
    "recover_hmt",
    "recover_nystrom",
    "recover_singlepass",
    "recover_svd",
    "sort_by_magnitude",
    "split_threads",
    "stage_timer",
]

#: Nyström refuses operators whose ``ΩᵀHΩ`` has an eigenvalue below ``-PSD_TOLERANCE``
#: times its largest ``|eigenvalue|``.
PSD_TOLERANCE = 1e-3


class IndefiniteOperatorError(ValueError):
    """The Nyström recovery met a clearly indefinite operator."""


class Factors(NamedTuple):
    """A recovered decomposition ``basis @ rot`` with ``values`` (sorted).

    ``ritz`` and ``residuals`` (HMT and Krylov only): the Rayleigh–Ritz values and the
    residual norms ``‖H x − θ x‖`` of the Ritz vectors plus the rounding floor of
    :func:`curvsketch.sketch.residuals.residual_floor`, in the order of ``values``.
    """

    values: torch.Tensor
    basis: torch.Tensor
    rot: torch.Tensor
    ritz: torch.Tensor | None = None
    residuals: torch.Tensor | None = None


@contextmanager
def stage_timer(timings: dict[str, float] | None, stage: str) -> Iterator[None]:
    """Add the wall time of the ``with`` body to ``timings[stage]`` (if ``timings``)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


@contextmanager
def split_threads(workers: int) -> Iterator[None]:
    """Give each of ``workers`` concurrent tasks ``1/workers`` of torch's intra-op threads
    for the duration (a process-wide setting, restored afterwards), so that tasks run side
    by side do not oversubscribe the CPUs."""
    before = torch.get_num_threads()
    share = max(1, before // max(1, workers))
    if share < before:
        torch.set_num_threads(share)
    try:
        yield
    finally:
        if share < before:
            torch.set_num_threads(before)


def apply_test_operators(
    phi: NoiseOperator, psi: NoiseOperator, q: torch.Tensor, t: int, *, block_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``ΦQ`` and ``Ψ[:t]Q``, the two test-operator products of the single-pass core.

    On a CPU with ``n ≥ 2`` torch threads the two run side by side, each on ``n/2``
    threads: the batched FFTs and gathers of an SSRFT gain ~1.6× from a second thread, two
    independent products on one thread each gain ~2×. Elsewhere they run one after the
    other. The numbers are the same either way.
    """
    if q.device.type != "cpu" or torch.get_num_threads() < 2:
        return phi.matmul(q, block_size=block_size), psi.matmul(q, 0, t, block_size=block_size)
    with split_threads(2), ThreadPoolExecutor(2) as pool:
        left = pool.submit(phi.matmul, q, block_size=block_size)
        right = pool.submit(psi.matmul, q, 0, t, block_size=block_size)
        return left.result(), right.result()


def eigh_by_magnitude(
    matrix: torch.Tensor, timings: dict[str, float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigendecomposition of the symmetric part of a small core matrix, sorted by ``|λ|``.

    Args:
        matrix: ``(o, o)``; only ``(matrix + matrixᵀ)/2`` is decomposed.
        timings: optional dict; adds ``eigh`` and ``eigvec`` (the sort) seconds.

    Returns:
        ``(λ, W)`` sorted by ``|λ|`` descending, signs kept.
    """
    with stage_timer(timings, "eigh"):
        values, w = torch.linalg.eigh((matrix + matrix.T) / 2)
    with stage_timer(timings, "eigvec"):
        values, w = sort_by_magnitude(values, w)
    return values, w


def orthonormal_basis(y: torch.Tensor) -> torch.Tensor:
    """Thin QR ``Y = QR``; return ``Q`` (same shape as ``Y``, orthonormal columns)."""
    return torch.linalg.qr(y, mode="reduced").Q


def sort_by_magnitude(
    values: torch.Tensor, vectors: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort eigenpairs by ``|λ|`` descending (stable), keeping signs; columns follow."""
    order = torch.argsort(values.abs(), descending=True, stable=True)
    return values[order], vectors[:, order]


def core_solve(left: torch.Tensor, z: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Return ``C = left⁺ Z (right⁺)ᵀ`` by least squares, without forming a pseudo-inverse.

    With ``left = QₗRₗ`` and ``right = QᵣRᵣ`` (thin QR, full column rank),
    ``left⁺ = Rₗ⁻¹Qₗᵀ`` and ``(right⁺)ᵀ = ((right)ᵀ)⁺ = Qᵣ Rᵣ⁻ᵀ``, so
    ``C = Rₗ⁻¹ (Qₗᵀ Z Qᵣ) Rᵣ⁻ᵀ`` with two triangular solves (the core solve of Tropp,
    Yurtsever, Udell, Cevher 2019, ``C = (ΦQ) \\ Z / ((ΨP)ᵀ)`` in MATLAB notation).

    Args:
        left: ``ΦQ``, shape ``(s, o)``, ``s >= o``.
        z: the core sketch ``Z = Φ A Ψᵀ``, shape ``(s, t)``.
        right: ``ΨP``, shape ``(t, p)``, ``t >= p``.

    Returns:
        ``(o, p)`` tensor.
    """
    q_l, r_l = torch.linalg.qr(left, mode="reduced")
    q_r, r_r = torch.linalg.qr(right, mode="reduced")
    middle = q_l.T @ z @ q_r
    x = torch.linalg.solve_triangular(r_l, middle, upper=True)  # Rₗ⁻¹ M
    return torch.linalg.solve_triangular(r_r, x.T, upper=True).T  # (Rᵣ⁻¹ Xᵀ)ᵀ = X Rᵣ⁻ᵀ


def recover_singlepass(
    y: torch.Tensor,
    z: torch.Tensor,
    phi: NoiseOperator,
    psi: NoiseOperator,
    *,
    block_size: int | None = None,
    timings: dict[str, float] | None = None,
) -> Factors:
    """Single-pass symmetric recovery: SEIGH (Fernandez, Schneider, Mahsereci, Hennig,
    TMLR 2025, §3, Alg. 2), after Tropp, Yurtsever, Udell, Cevher (SIAM J. Sci. Comput. 2019).

    With ``Y = H Ψ[:o]ᵀ`` (or ``H Ωᵀ`` for an independent ``Ω``: the ``"tropp"`` variant)
    and ``Z = Φ H Ψ[:t]ᵀ``: ``Q = orth(Y)``; since
    ``H ≈ Q C Qᵀ`` gives ``Z ≈ (ΦQ) C (ΨQ)ᵀ``, the core is
    ``C = (ΦQ)⁺ Z ((ΨQ)ᵀ)⁺`` (:func:`core_solve`); then ``C ← (C + Cᵀ)/2 = W Λ Wᵀ`` and
    ``H ≈ (QW) Λ (QW)ᵀ``. The right factor uses ``Ψ`` — the test matrix whose rows were
    multiplied by ``H`` — not ``Φ``: with ``Φ`` on both sides the "core" is
    ``C (ΨQ)ᵀ((ΦQ)ᵀ)⁺ ≠ C``, wrong even for an exactly low-rank ``H`` and off by tens of
    percent on the top eigenvalues of indefinite spectra.

    Args:
        y: outer sketch ``(D, o)``, ``H Ψ[:o]ᵀ`` or ``H Ωᵀ``.
        z: inner sketch ``(s, t)``, ``s = phi.num_rows``, columns = ``psi`` rows ``0..t-1``.
        phi: the inner test operator ``Φ`` (``s × D``).
        psi: the test operator whose rows were multiplied by ``H``.
        block_size: columns of ``Q`` per batched test-operator transform.
        timings: optional dict; adds ``qr``, ``core``, ``eigh`` and ``eigvec`` seconds.

    Returns:
        :class:`Factors` ``(λ sorted by |λ|, Q, W)``.
    """
    t = z.shape[1]
    if z.shape[0] != phi.num_rows or y.shape[1] > t or t > psi.num_rows:
        raise ValueError(
            f"recover_singlepass: sketch shapes Y {tuple(y.shape)}, Z {tuple(z.shape)} do not "
            f"match Φ {phi.shape} and Ψ {psi.shape}"
        )
    with stage_timer(timings, "qr"):
        q = orthonormal_basis(y)
    with stage_timer(timings, "core"):
        phi_q, psi_q = apply_test_operators(phi, psi, q, t, block_size=block_size)
        core = core_solve(phi_q, z, psi_q)
    values, w = eigh_by_magnitude(core, timings)
    return Factors(values, q, w)


def recover_hmt(
    q: torch.Tensor, hq: torch.Tensor, *, timings: dict[str, float] | None = None
) -> Factors:
    """Rayleigh–Ritz step of the two-pass method (Halko, Martinsson, Tropp 2011, Alg. 5.3),
    with residual norms and residual-corrected eigenvalues.

    ``B = QᵀHQ = W Θ Wᵀ`` gives Ritz pairs ``(θᵢ, xᵢ = Q wᵢ)``. Since ``H Q`` is at hand,
    the residuals ``rᵢ = ‖H xᵢ − θᵢ xᵢ‖ = ‖(HQ − QB) wᵢ‖`` cost one ``D·o²`` product and a
    small Gram matrix, with no cancellation (``R = HQ − QB`` is formed first). Two classical
    facts for a symmetric ``H`` and unit ``x`` (Parlett, "The Symmetric Eigenvalue Problem",
    SIAM 1998, ch. 4 on residual bounds and ch. 11 on Rayleigh–Ritz approximations):

    * some eigenvalue of ``H`` lies in ``[θᵢ − rᵢ, θᵢ + rᵢ]`` (an error bar per pair);
    * ``xᵢ ⟂ H xᵢ − θᵢ xᵢ``, so ``‖H xᵢ‖ = √(θᵢ² + rᵢ²)``: the square root of the Rayleigh
      quotient of ``H²``. For a Ritz vector ``x = cos φ·u + sin φ·v`` of an eigenvector
      ``u`` (eigenvalue ``λ``), ``θ`` is off by ``sin²φ·(λ − vᵀHv)`` and ``‖Hx‖`` by about
      ``½ sin²φ·(λ − ‖Hv‖²/λ)``: for the dominant eigenvalues, half the error. This is a
      first-order effect: it needs Ritz vectors that are already accurate (errors of a few
      percent); where the sketch is too small for a flat spectrum, neither value is.

    The residual norms are formed as ``‖R wᵢ‖`` in row blocks, not from the Gram matrix
    ``RᵀR`` (which can cancel to ``√eps·‖R‖`` when ``wᵢ`` combines large columns of ``R``
    into a small ``R wᵢ``), and the returned ``residuals`` are ``rᵢ + (√D + o)·eps·‖H‖``, floored
    at the rounding level of the products so that ``[θᵢ − rᵢ, θᵢ + rᵢ]`` holds an eigenvalue
    (:mod:`curvsketch.sketch.residuals`).

    The returned ``values`` are ``sign(θᵢ)·√(θᵢ² + rᵢ²)`` (unfloored ``rᵢ``), re-sorted by
    magnitude; ``ritz`` and ``residuals`` keep ``θ`` and ``r`` (the Rayleigh–Ritz values give
    the best approximation ``Q M Qᵀ`` of ``H`` in Frobenius norm, so low-rank operators use them).
    On the paper's MNIST setting the correction halves the top-10 and top-50 eigenvalue
    errors (``benchmarks/results/seigh_mnist_hmt20.md``).

    Args:
        q: orthonormal basis ``(D, o)``.
        hq: ``H Q``, shape ``(D, o)``; overwritten with the residual ``HQ − QB``.
        timings: optional dict; adds ``core``, ``eigh`` and ``eigvec`` seconds.

    Returns:
        :class:`Factors` ``(values sorted by |value|, Q, W, θ, r + floor)``.
    """
    with stage_timer(timings, "core"):
        b = q.T @ hq
        b = (b + b.T) / 2
    ritz, w = eigh_by_magnitude(b, timings)
    with stage_timer(timings, "core"):
        residual = hq.addmm_(q, b, alpha=-1)
        norms = column_residual_norms(residual, w)
        del residual
        sign = torch.where(ritz < 0, -1.0, 1.0).to(ritz.dtype)
        values = sign * torch.hypot(ritz, norms)
        order = torch.argsort(values.abs(), descending=True, stable=True)
        floor = residual_floor(norm_estimate(values), q.shape[0], q.shape[1], q.dtype)
        bounds = norms + floor
    return Factors(values[order], q, w[:, order], ritz[order], bounds[order])


def recover_nystrom(
    y: torch.Tensor,
    omega: torch.Tensor,
    *,
    psd_tolerance: float = PSD_TOLERANCE,
    timings: dict[str, float] | None = None,
) -> Factors:
    """Stabilised Nyström approximation of a PSD operator (Tropp, Yurtsever, Udell,
    Cevher 2017, "Fixed-rank approximation of a positive-semidefinite matrix from streaming
    data", NeurIPS, Alg. 3).

    ``Y_ν = Y + νΩ`` with ``ν = √D · eps(‖Y‖_F)`` (the Frobenius norm bounds the paper's
    spectral norm, so the shift is at least as large and as stable); ``B = ΩᵀY_ν = LLᵀ``;
    ``F = Y_ν L⁻ᵀ = Q_F R_F``; ``R_F = W Σ Xᵀ``; ``H ≈ (Q_F W) max(Σ² − ν, 0) (Q_F W)ᵀ``.

    Args:
        y: ``H Ω``, shape ``(D, o)``.
        omega: the test vectors ``Ω`` as columns, ``(D, o)``.
        psd_tolerance: refuse when ``λ_min(ΩᵀHΩ) < −psd_tolerance · max|λ(ΩᵀHΩ)|``.
        timings: optional dict; adds ``core``, ``qr``, ``eigh`` and ``eigvec`` seconds.

    Returns:
        :class:`Factors` ``(λ descending, Q_F, W)``.

    Raises:
        IndefiniteOperatorError: the operator is clearly not positive semi-definite.
    """
    dim = y.shape[0]
    hint = (
        "recovery='nystrom' needs a positive semi-definite operator (e.g. a GGN); "
        "use recovery='singlepass' or recovery='hmt' for indefinite ones (Hessians)"
    )
    with stage_timer(timings, "core"):
        b0 = omega.T @ y
        b0 = (b0 + b0.T) / 2
        spectrum = torch.linalg.eigvalsh(b0)
        scale = float(spectrum.abs().max())
        if float(spectrum[0]) < -psd_tolerance * scale:
            raise IndefiniteOperatorError(
                f"the operator is indefinite: ΩᵀHΩ has eigenvalue {float(spectrum[0]):.3g} "
                f"against a largest |eigenvalue| of {scale:.3g}; {hint}"
            )
        norm = float(torch.linalg.matrix_norm(y))
        nu = math.sqrt(dim) * _spacing(norm, y.dtype)
        y_nu = y + nu * omega
        b = b0 + nu * (omega.T @ omega)
        b = (b + b.T) / 2
        chol, info = torch.linalg.cholesky_ex(b)
        if int(info) != 0:
            raise IndefiniteOperatorError(f"Cholesky of the shifted ΩᵀHΩ failed; {hint}")
        f = torch.linalg.solve_triangular(chol.T, y_nu, upper=True, left=False)  # Y_ν L⁻ᵀ
        del y_nu
    with stage_timer(timings, "qr"):
        q, r = torch.linalg.qr(f, mode="reduced")
        del f
    with stage_timer(timings, "eigh"):
        w, sigma, _ = torch.linalg.svd(r)
    with stage_timer(timings, "eigvec"):
        values = torch.clamp(sigma**2 - nu, min=0.0)
    return Factors(values, q, w)


def _spacing(x: float, dtype: torch.dtype) -> float:
    """Distance from ``x`` to the next larger number representable in ``dtype``."""
    t = torch.tensor(x, dtype=dtype)
    return float(torch.nextafter(t, torch.tensor(math.inf, dtype=dtype)) - t)


def recover_svd(
    xt: torch.Tensor,
    y: torch.Tensor,
    z: torch.Tensor,
    phi: NoiseOperator,
    psi: NoiseOperator,
    *,
    block_size: int | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sketched SVD recovery: SSVD (Fernandez et al., TMLR 2025, §3, Alg. 1), after Tropp,
    Yurtsever, Udell, Cevher (SIAM J. Sci. Comput. 2019).

    ``Q = orth(Y)``, ``P = orth(Xᵀ)``, ``C = (ΦQ)⁺ Z ((ΨP)⁺)ᵀ = W Σ Tᵀ``;
    ``A ≈ (QW) Σ (PT)ᵀ``.

    Args:
        xt: co-range sketch, transposed: ``Xᵀ = Aᵀ Υᵀ``, shape ``(N, o)``.
        y: range sketch ``Y = A Ωᵀ``, shape ``(M, o)``.
        z: core sketch ``Z = Φ A Ψᵀ``, shape ``(s, s)``.
        phi: ``Φ`` (``s × M``).
        psi: ``Ψ`` (``s × N``).
        block_size: columns per batched test-operator transform.
        timings: optional dict; adds ``qr``, ``core``, ``eigh`` (the small SVD), ``eigvec``.

    Returns:
        ``(σ, Q, W, P, T)`` with ``σ`` descending.
    """
    with stage_timer(timings, "qr"):
        q = orthonormal_basis(y)
        p = orthonormal_basis(xt)
    with stage_timer(timings, "core"):
        phi_q = phi.matmul(q, block_size=block_size)
        psi_p = psi.matmul(p, 0, z.shape[1], block_size=block_size)
        core = core_solve(phi_q, z, psi_p)
    with stage_timer(timings, "eigh"):
        w, sigma, th = torch.linalg.svd(core)
    with stage_timer(timings, "eigvec"):
        t = th.T
    return sigma, q, w, p, t
