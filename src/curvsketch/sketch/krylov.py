"""Randomized block Krylov eigensolver: many eigenpairs to high accuracy from block products.

A sketch with subspace iterations (``"hmt"``, ``power_iters=p``) keeps only the last
iterate ``H^p Ω`` of its ``(2 + p)·o`` products. Block Krylov keeps all of them: the basis
of ``K_d(H, Ω) = span[Ω, HΩ, …, H^{d−1}Ω]`` for a random start block ``Ω`` of ``b``
columns, and Rayleigh–Ritz on it. For the same products it captures the dominant
eigenspace far better on slowly decaying, indefinite spectra like those of network
Hessians (Musco & Musco, "Randomized block Krylov methods for stronger and faster
approximate singular value decomposition", NeurIPS 2015, Alg. 2; Tropp & Webber,
"Randomized algorithms for low-rank matrix approximation: design, analysis, and
applications", arXiv:2306.12418, 2023, §11). Against single-vector Lanczos (ARPACK's
``eigsh``) it trades a little accuracy per product for block products (one pass over the
data serves ``b`` vectors) and BLAS-3 orthogonalisation.

The basis is built as in block Lanczos (Golub & Underwood, "The block Lanczos method for
computing eigenvalues", Mathematical Software III, 1977) with *full* reorthogonalisation:
``W = H Q_j`` is projected against the last two blocks and then once more against all
blocks (classical Gram–Schmidt, twice where it matters: Giraud, Langou, Rozložník, "The
loss of orthogonality in the Gram-Schmidt orthogonalization process", Comput. Math.
Appl. 50, 2005), then ``W = Q_{j+1} R_j``. The
projection coefficients are the columns of ``T = QᵀHQ``, so Rayleigh–Ritz needs no product
beyond the ``m = d·b`` of the basis, and ``H Q = Q T + Q_d R_{d−1} E_dᵀ`` gives the
residual of every Ritz pair ``x = Q w`` for free: ``‖Hx − θx‖ = ‖R_{d−1} w_{last}‖``
(``w_last`` the last ``b`` entries of ``w``; Parlett, "The Symmetric Eigenvalue Problem",
SIAM 1998, ch. 13). When ``W`` loses rank (the basis holds an invariant subspace), the
missing directions are filled with fresh random vectors, as in block Lanczos with
deflation, so the basis stays orthonormal and of full size.

Which eigenvalues (``which``): a Krylov space approximates the extreme eigenvectors at
*both* ends of the spectrum, each end at a rate set by its own gap relative to the spread
``λ_max − λ_min`` (Kaniel–Paige–Saad bounds: Saad, "Numerical Methods for Large Eigenvalue
Problems", 2nd ed., SIAM 2011, §6.6). So ``"LM"`` (largest ``|θ|``, the default and the
paper's), ``"LA"`` (largest ``θ``) and ``"SA"`` (smallest ``θ``, the most negative
curvature) select Ritz pairs of the same basis by their rule. An end whose eigenvalues are
small and clustered (the negative end of a network Hessian) converges more slowly than the
dominant one: ask for a larger ``inner`` there than for ``"LM"``. Measured on the paper's
7,030-parameter MLP Hessian (float64, blocks of 8, top 20 against dense ``eigh``): ``"LM"``
and ``"LA"`` reach 1e-10 relative with ``inner = 120`` and rounding with 160; ``"SA"`` (its
most negative eigenvalues, −0.92 to −0.27 against λ_max = 10.5) is off by 1e-1 at 120, 2e-5
at 160, 6e-10 at 200 and at rounding with 400. For
``"LA"``/``"SA"`` the eigenvalues are the Ritz values ``θ`` themselves: the correction
``±‖Hx‖`` of ``"LM"`` is a first-order gain only for the dominant ``|λ|``; for a small
eigenvalue at the far end ``‖Hx‖`` is dominated by the components of ``x`` along the large
ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.factors import Factors, eigh_sorted, which_order
from curvsketch.sketch.gram_schmidt import DEFLATION_ROUNDOFFS, next_block, project_local_then_full
from curvsketch.sketch.measure import apply_in_blocks, column_major
from curvsketch.sketch.noise import STREAM_PSI
from curvsketch.sketch.plan import SketchPlan
from curvsketch.sketch.ranks import split_over_ranks
from curvsketch.sketch.residuals import norm_estimate, residual_floor
from curvsketch.sketch.timing import stage_timer

__all__ = [
    "KrylovOrthogonalityError",
    "KrylovState",
    "block_krylov",
    "check_ritz_orthonormal",
    "krylov_start",
    "run",
]


class KrylovState:
    """Everything the block-Lanczos recurrence of :func:`block_krylov` keeps between blocks.

    After ``done`` blocks: the basis columns ``[0, min((done + 1)·b, m))`` (block ``done``
    is the next to multiply), the projected matrix ``T = QᵀHQ`` in its first ``done·b``
    columns (rows up to ``(done + 1)·b``: the coefficients and ``R_j``), the running
    largest coefficient ``scale`` (deflation tolerance), the random generator of the
    deflation fill, and after the last block ``last_r`` (the residual block's ``R``). A
    store (:mod:`curvsketch.sketch.stored_krylov`) commits exactly this after each block,
    so a resumed run continues bitwise where it stopped.

    Attributes:
        basis: ``(D, m)`` column-major (on disk, a :class:`~curvsketch.store.ZarrMatrix`,
            in :class:`~curvsketch.sketch.krylov_outofcore.OutOfCoreKrylovState`).
        coupling: ``(m, m)``, ``T``.
        width: ``b``.
        num_blocks: ``d``.
        done: blocks multiplied so far.
        scale: largest ``|coefficient|`` so far.
        generator: CPU generator of the deflation fill.
        last_r: ``(b, b)`` after the last block, else zeros.
    """

    def __init__(self, start: torch.Tensor, num_blocks: int, seed: int = 0) -> None:
        dim, width = int(start.shape[0]), int(start.shape[1])
        self._setup(dim, width, start.dtype, start.device, num_blocks, seed)
        self.basis = column_major((self.dim, self.total), dtype=self.dtype, device=self.device)

    def _setup(
        self,
        dim: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        num_blocks: int,
        seed: int,
    ) -> None:
        """Everything but the basis (an out-of-core state keeps it on disk)."""
        total = num_blocks * width
        if total > dim:
            raise ValueError(
                f"the Krylov basis of {num_blocks} blocks of {width} has {total} columns, more "
                f"than the dimension D={dim}: use at most {dim // max(width, 1)} blocks"
            )
        self.dtype, self.device = dtype, device
        self.width, self.num_blocks, self.total, self.dim = width, num_blocks, total, dim
        self.generator = torch.Generator().manual_seed(int(seed))
        self.coupling = torch.zeros((total, total), dtype=self.dtype, device=self.device)
        self.scale = 0.0
        self.done = 0
        self.last_r = torch.zeros((width, width), dtype=self.dtype, device=self.device)

    def start(self, start: torch.Tensor, timings: dict[str, float] | None = None) -> None:
        """Orthonormalise the start block into the first basis columns."""
        with stage_timer(timings, "qr"):
            self.basis[:, : self.width] = torch.linalg.qr(start, mode="reduced").Q

    def step(
        self,
        op: Any,
        *,
        block_size: int,
        on_block: Callable[[int], Any] | None = None,
        timings: dict[str, float] | None = None,
    ) -> None:
        """Multiply block ``done`` by ``op``, project it and append the next basis block."""
        j, width, num_blocks = self.done, self.width, self.num_blocks
        c0, c1 = j * width, (j + 1) * width
        eps = torch.finfo(self.dtype).eps
        basis, coupling = self.basis, self.coupling
        with stage_timer(timings, "measure"):
            what = f"op @ Q (Krylov block {j + 1} of {num_blocks})"
            w = apply_in_blocks(op, basis[:, c0:c1], block_size, what=what, on_block=on_block)
        with stage_timer(timings, "qr"):
            local = min(c1, 2 * width)
            coupling[:c1, c0:c1] = project_local_then_full(basis[:, :c1], w, local)
            self.scale = max(self.scale, float(coupling[:c1, c0:c1].abs().max()))
            tol = DEFLATION_ROUNDOFFS * eps * max(self.scale, torch.finfo(self.dtype).tiny)
            if j + 1 < num_blocks:
                q, r = next_block(w, basis[:, :c1], tol, self.generator)
                basis[:, c1 : c1 + width] = q
                coupling[c1 : c1 + width, c0:c1] = r
            else:
                self.last_r = torch.linalg.qr(w, mode="r").R
            del w
        self.done = j + 1

    def ritz(
        self, *, keep: int | None = None, which: str = "LM", timings: dict[str, float] | None = None
    ) -> Factors:
        """Rayleigh–Ritz on the complete basis (see :func:`block_krylov`, Returns)."""
        assert self.done == self.num_blocks, "ritz() needs every Krylov block"
        total, width = self.total, self.width
        theta, rot = eigh_sorted(self.coupling, which, timings)
        count = total if keep is None else min(int(keep), total)
        with stage_timer(timings, "core"):
            rot = rot[:, :count].contiguous()
            theta = theta[:count]
            residuals = torch.linalg.vector_norm(self.last_r @ rot[total - width :], dim=0)
            if which == "LM":
                sign = torch.where(theta < 0, -1.0, 1.0).to(theta.dtype)
                values = sign * torch.hypot(theta, residuals)
            else:
                values = theta
            order = which_order(values, which)
            check_ritz_orthonormal(self.basis, rot[:, order[:CHECKED_PAIRS]], self.dtype)
            # The free residual sees only the exact three-term relation, not its rounding:
            # floor it at the rounding level so that the intervals hold (see .residuals).
            floor = residual_floor(norm_estimate(values), self.dim, total, self.dtype)
            bounds = residuals + floor
        return Factors(values[order], self.basis, rot[:, order], theta[order], bounds[order])


#: Ritz vectors (the leading ones, in the result's order) whose orthonormality every Krylov
#: result checks: ``D·m·128`` flops at most, a fraction of the basis orthogonalisation.
CHECKED_PAIRS = 128


class KrylovOrthogonalityError(RuntimeError):
    """The Krylov basis lost orthogonality: its Ritz pairs would be wrong."""


#: Bytes of basis rows read at a time by the orthonormality check of a basis on disk.
_CHECK_READ_BYTES = 1 << 27


def _ritz_gram(basis: Any, rot: torch.Tensor) -> torch.Tensor:
    """``UᵀU`` in float64 for ``U = Q W``; a basis on disk (a ZarrMatrix) is read in row
    blocks of at most :data:`_CHECK_READ_BYTES`, so the check stays within the budget."""
    if isinstance(basis, torch.Tensor):
        u = (basis @ rot.to(basis.dtype)).to(torch.float64)
        return u.T @ u
    dim, cols = int(basis.shape[0]), int(basis.shape[1])
    itemsize = torch.empty((), dtype=basis.dtype).element_size()
    rows = max(1024, _CHECK_READ_BYTES // max(cols * itemsize, 1))
    gram = torch.zeros((rot.shape[1], rot.shape[1]), dtype=torch.float64)
    for r0 in range(0, dim, rows):
        u = (basis[r0 : min(dim, r0 + rows)] @ rot.to(basis.dtype)).to(torch.float64)
        gram += u.T @ u
    return gram


def check_ritz_orthonormal(basis: Any, rot: torch.Tensor, dtype: torch.dtype) -> None:
    """Refuse Ritz vectors ``U = Q W`` that are not orthonormal (``max |UᵀU − I| > √eps``).

    Rayleigh–Ritz on the recurrence's projected matrix is right only for an orthonormal
    basis; once the basis loses orthogonality the Ritz values can lie far outside the
    spectrum, silently (measured before the DGKS re-projections of
    :mod:`curvsketch.sketch.gram_schmidt`: 13.9 for an operator of norm 10, float32,
    D = 2·10⁵, m = 2,000, a spectrum that falls to a flat level of 1e-7·‖H‖ after 400
    directions; with them 10.0007). A guard: it costs ``D·m·k + D·k²`` flops for ``k``
    checked pairs, and one read of a basis on disk.

    Args:
        basis: the ``(D, m)`` basis, a tensor or a :class:`~curvsketch.store.ZarrMatrix`.
        rot: ``(m, k)`` Ritz coefficients of the pairs to check.
        dtype: the precision of the products (sets the tolerance ``√eps``).

    Raises:
        KrylovOrthogonalityError: with the measured loss and what to change.
    """
    g = _ritz_gram(basis, rot)
    g.diagonal().sub_(1.0)
    loss = float(g.abs().max()) if g.numel() else 0.0
    tol = torch.finfo(dtype).eps ** 0.5
    if not loss <= tol:
        raise KrylovOrthogonalityError(
            f"krylov: the {basis.shape[1]}-column basis lost orthogonality (max |UᵀU − I| = "
            f"{loss:.2g} > {tol:.2g} over the {rot.shape[1]} Ritz vectors kept), so its Ritz "
            f"values are not eigenvalue estimates; in {dtype} this is most likely where the "
            "basis is much larger than the operator's numerical rank at that precision (the "
            "spectrum falls below ~100·eps·‖H‖): use a smaller inner, or float64 products"
        )


def block_krylov(
    op: Any,
    start: torch.Tensor,
    num_blocks: int,
    *,
    block_size: int,
    keep: int | None = None,
    seed: int = 0,
    on_block: Callable[[int], Any] | None = None,
    timings: dict[str, float] | None = None,
    which: str = "LM",
) -> Factors:
    """Block Krylov basis of ``num_blocks`` blocks from ``start``, then Rayleigh–Ritz.

    Randomized block Krylov iteration (Musco & Musco, NeurIPS 2015, Alg. 2; Tropp &
    Webber 2023, §11) with block-Lanczos coefficients and full reorthogonalisation; see the
    module docstring. Products: ``num_blocks · b`` (``b = start.shape[1]``); memory: the
    ``D × m`` basis (``m = num_blocks · b``), one ``D × b`` block and the ``m × m`` matrix
    ``T``. Orthogonalisation costs about ``2·D·m²`` flops, all in matrix products. The
    state between blocks is a :class:`KrylovState`.

    Args:
        op: symmetric ``D × D`` operator with ``@`` on ``(D, n)`` blocks.
        start: ``(D, b)`` start block (e.g. ``b`` test vectors); it is orthonormalised.
        num_blocks: ``d >= 1``, the number of Krylov blocks (``K_d``).
        block_size: columns per operator call (a block of ``b`` is split into calls of at
            most ``block_size`` columns; this does not change the result).
        keep: Ritz pairs to return (the first by ``which``; default all ``m``).
        seed: seed of the random vectors that replace lost directions (deflation only).
        on_block: called with the number of products after each operator call (progress).
        timings: optional dict; adds ``measure``, ``qr``, ``core``, ``eigh``, ``eigvec``
            seconds.
        which: ``"LM"`` (largest ``|θ|``), ``"LA"`` (largest ``θ``) or ``"SA"``
            (smallest ``θ``): which Ritz pairs are kept, and their order.

    Returns:
        :class:`Factors` ``(values, Q, W, θ, r)``: ``Q`` the ``(D, m)`` basis, ``W`` the
        ``(m, keep)`` Ritz coefficients, ``θ`` the Ritz values and ``r`` the residual norms
        ``‖HQw − θQw‖`` plus the rounding floor ``(√D + m)·eps·‖H‖``
        (:func:`curvsketch.sketch.residuals.residual_floor`: the free residual is exact only
        in exact arithmetic; without the floor, intervals ``[θ − r, θ + r]`` of converged
        pairs miss the eigenvalue by a few ``eps·‖H‖``); ``values = sign(θ)·√(θ² + r²) =
        ±‖HQw‖`` (unfloored ``r``) as for ``"hmt"``
        (:func:`curvsketch.sketch.hmt.recover_hmt`), all sorted by ``|values|``; for
        ``which="LA"``/``"SA"`` ``values = θ``, sorted descending / ascending.
    """
    state = KrylovState(start, num_blocks, seed)
    state.start(start, timings)
    for _ in range(num_blocks):
        state.step(op, block_size=block_size, on_block=on_block, timings=timings)
    return state.ritz(keep=keep, which=which, timings=timings)


def krylov_start(plan: SketchPlan) -> torch.Tensor:
    """The ``(D, b)`` start block of a ``"krylov"`` plan: the first ``b`` rows of ``Ψ``."""
    width = plan.block_size
    psi = plan.test_operator(STREAM_PSI, width)
    return psi.columns(0, width, dtype=plan.dtype or torch.float64, device=plan.device or "cpu")


def run(op: Any, plan: SketchPlan, progress: Progress | None, timings: dict[str, float]) -> Factors:
    """``plan.blocks`` Krylov blocks of ``plan.block_size`` from the first rows of ``Ψ``,
    keeping ``plan.outer`` Ritz pairs by ``plan.which`` (:func:`block_krylov`).

    Under an initialised ``torch.distributed`` group the columns of each block's product
    are split over the ranks and gathered (:func:`curvsketch.sketch.ranks.split_over_ranks`;
    not for a ``collective`` operator, which every rank multiplies whole).
    """
    width = plan.block_size
    return block_krylov(
        split_over_ranks(op, plan),
        krylov_start(plan),
        plan.blocks,
        block_size=width,
        keep=plan.outer,
        seed=plan.seed,
        on_block=None if progress is None else progress.update,
        timings=timings,
        which=plan.which,
    )
