"""SEIGH: sketched symmetric eigendecomposition from operator products only.

Four recoveries share one measurement scheme (blocks of test vectors addressed by
``(seed, index)``, see :mod:`.measure`):

* ``"singlepass"`` (default): SEIGH, Fernandez, Schneider, Mahsereci, Hennig, "Connecting
  parameter magnitudes and Hessian eigenspaces at scale using sketched methods", TMLR 2025,
  §3, Alg. 2 — the symmetric single-pass form of Tropp, Yurtsever, Udell, Cevher,
  "Streaming low-rank matrix approximation with an application to scientific simulation",
  SIAM J. Sci. Comput. 41(4), 2019, in which the first ``outer`` of the ``inner`` products
  double as the outer sketch: exactly ``inner`` products, each independent of the others.
* ``"tropp"``: the same single pass with an *independent* outer test matrix, as in Tropp et
  al. (2019): ``outer + inner`` products. Reusing the core products for the outer sketch
  correlates ``Q`` with ``Ψ``; the core solve then picks up an error that grows with the
  *sum* of the tail eigenvalues (e.g. a small positive bulk over millions of dimensions),
  where the independent sketch's error grows with their root-sum-square only. Use it when
  ``aposteriori_error`` reports a poor single-pass approximation on a large operator.
* ``"hmt"``: two passes (Halko, Martinsson, Tropp, "Finding structure with randomness",
  SIAM Review 53(2), 2011, Alg. 4.1/4.4 + 5.3): range finder, optional subspace
  iterations, then the Rayleigh–Ritz matrix ``QᵀHQ``; the residual of each Ritz pair
  gives an interval that holds an eigenvalue and a corrected eigenvalue ``±‖Hu‖``
  (:func:`curvsketch.sketch.hmt.recover_hmt`).
* ``"nystrom"``: PSD operators only (GGN): Tropp, Yurtsever, Udell, Cevher, "Fixed-rank
  approximation of a positive-semidefinite matrix from streaming data", NeurIPS 2017,
  Alg. 3, with its stabilising shift.
* ``"krylov"``: randomized block Krylov (Musco & Musco, NeurIPS 2015, Alg. 2) from a block
  of ``block_size`` test vectors, ``inner`` products in all, Rayleigh–Ritz with free
  residuals (:func:`curvsketch.sketch.krylov.block_krylov`): for hundreds to thousands of
  eigenpairs of a slowly decaying spectrum to high accuracy.

``which`` picks the eigenvalues: ``"LM"`` (largest ``|λ|``, the default and the paper's),
``"LA"`` (largest algebraic) or ``"SA"`` (smallest algebraic: the most negative curvature),
the last two for ``"krylov"`` (Ritz pairs selected by the rule, :mod:`.krylov`) and
``"hmt"`` (a shifted operator, :mod:`.hmt`).

The flow of one call: :func:`seigh` checks the operator and builds one frozen
:class:`~curvsketch.sketch.plan.SketchPlan` (:func:`~curvsketch.sketch.plan.make_plan`:
every size rule); :func:`solve` runs the symmetry check, the plan's recovery from the
registry (:mod:`.recovery`: one module per recovery) and assembles the result
(:func:`~curvsketch.sketch.factors.to_result`); with ``store=`` it hands the plan to
:func:`curvsketch.sketch.stored.solve_stored` instead.
"""

from __future__ import annotations

from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.factors import to_result
from curvsketch.sketch.krylov_outofcore import out_of_core, solve_krylov_out_of_core
from curvsketch.sketch.measure import measure_outer, measure_singlepass
from curvsketch.sketch.noise import STREAM_OMEGA, STREAM_PHI, STREAM_PSI
from curvsketch.sketch.plan import (
    KRYLOV_BLOCK,
    KRYLOV_MIN_DEPTH,
    RECOVERIES,
    SketchPlan,
    make_plan,
)
from curvsketch.sketch.recovery import get_recovery
from curvsketch.sketch.result import EighResult
from curvsketch.sketch.stored import solve_stored
from curvsketch.sketch.symmetry import SYMMETRY_PRODUCTS, check_symmetric
from curvsketch.sketch.validate import check_operator

__all__ = [
    "KRYLOV_BLOCK",
    "KRYLOV_MIN_DEPTH",
    "RECOVERIES",
    "STREAM_OMEGA",
    "STREAM_PHI",
    "STREAM_PSI",
    "SYMMETRY_PRODUCTS",
    "measure_outer",
    "measure_singlepass",
    "seigh",
    "solve",
]


def seigh(
    op: Any,
    outer: int,
    inner: int | None = None,
    *,
    recovery: str = "singlepass",
    noise: str = "ssrft",
    seed: int = 0,
    block_size: int | None = None,
    power_iters: int = 0,
    which: str = "LM",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    store: Any = None,
    memory_budget: int | None = None,
    check_symmetry: bool = True,
    symmetry_rtol: float | None = None,
) -> EighResult | None:
    """Sketched eigendecomposition of a symmetric operator ``H`` seen only through ``H @ X``.

    Single pass (default; Fernandez et al., TMLR 2025, §3, Alg. 2, after Tropp, Yurtsever,
    Udell, Cevher 2019): with test operators ``Ψ, Φ`` (``s × D``), measure ``y_i = H ψ_i`` for
    ``i < s`` (``s = inner``), ``Z = Φ [y_0 … y_{s−1}]`` and ``Y = [y_0 … y_{o−1}]``;
    ``Q = orth(Y)``, ``C = (ΦQ)⁺ Z ((ΨQ)ᵀ)⁺`` (least squares), ``(C + Cᵀ)/2 = W Λ Wᵀ``,
    ``H ≈ (QW) Λ (QW)ᵀ``. ``"tropp"``, ``"hmt"``, ``"nystrom"``, ``"krylov"``: see the module
    docstring. On very large operators whose small eigenvalues share a sign (a bulk with a
    non-zero mean), ``"singlepass"`` can be far off: check it with
    :func:`curvsketch.sketch.aposteriori_error` and prefer ``"tropp"`` there.

    Args:
        op: symmetric ``D × D`` operator (``.shape``, ``.dtype``, ``.device``, ``@``) or a
            tensor/array (wrapped with :func:`curvsketch.operators.protocol.as_operator`).
        outer: ``o``, the number of eigenpairs (outer sketch size).
        inner: ``s`` for ``"singlepass"``/``"tropp"``, the basis size ``m`` (products,
            rounded up to whole blocks) for ``"krylov"``; default ``min(2·outer, D)``; must
            be ``None`` for the other recoveries.
        recovery: ``"singlepass"``, ``"tropp"``, ``"hmt"``, ``"nystrom"`` (PSD only) or
            ``"krylov"``.
        noise: test operator: ``"ssrft"``, ``"gaussian"`` or ``"rademacher"``.
        seed: seed of the test operators; equal seeds give bitwise-equal test vectors.
        block_size: test vectors per operator product (default ``min(64, products)``);
            for ``"krylov"`` the Krylov block (default ``min(64, ⌈inner/8⌉)``): smaller
            blocks reach a higher polynomial degree for the same products (more accurate
            per product), larger ones run faster per product.
        power_iters: subspace iterations (``"hmt"`` only).
        which: ``"LM"`` (largest ``|λ|``), ``"LA"`` (largest algebraic) or ``"SA"``
            (smallest algebraic); ``"LA"``/``"SA"`` need ``recovery="krylov"`` (may need
            a larger ``inner`` than ``"LM"``: the far end of a Hessian's spectrum converges
            more slowly) or ``"hmt"`` (``SHIFT_STEPS`` more products for the shift, and
            power iterations: see :mod:`curvsketch.sketch.hmt`).
        dtype: must be ``None`` or ``op.dtype``.
        device: must be ``None`` or ``op.device``.
        progress: report products done / total, rate and ETA on stderr (blocks with
            ``store=``, reused blocks included).
        store: ``"singlepass"``, ``"krylov"`` or ``"hmt"``: a local path (Zarr v3),
            ``"memory"`` or a store object (:class:`curvsketch.store.MeasurementStore` for
            the single pass, :class:`curvsketch.store.StepStore` for the others). Blocks
            are committed to it as they are measured (a Krylov block with the state of the
            recurrence, each block of each HMT pass); blocks already there (same run: the
            store checks the operator fingerprint and all settings) are reused, so a killed
            run resumes where it stopped and ends with the uninterrupted result. Under an
            initialised ``torch.distributed`` (``torchrun``) the ranks split the blocks
            (single pass) or the columns of every block (krylov, hmt; every rank multiplies
            every block of a ``collective`` operator, and only rank 0 writes), and rank 0
            returns the result: other ranks return ``None``. See
            :mod:`curvsketch.sketch.stored`.
        memory_budget: bytes (with a store path): when the ``D × o`` outer sketch is larger,
            QR, core and eigenvectors run out of core and the result's ``Q`` is a
            :class:`curvsketch.store.ZarrMatrix` of the eigenvectors on disk. For
            ``"krylov"``: when the ``D × m`` basis is larger, it stays in the store and is
            orthogonalised against in row blocks (:mod:`.krylov_outofcore`; memory: the
            budget plus ``O(m²)``); the result's ``Q`` is the basis on disk (a
            ``ZarrMatrix``) and ``V`` the Ritz coefficients, so :meth:`EighResult.rows`
            reads only the rows it needs. One process only (not under ``torchrun``).
        check_symmetry: before sketching, compare ``uᵀHv`` with ``vᵀHu`` for two fixed
            test vectors (:func:`curvsketch.sketch.symmetry.check_symmetric`: one call on a
            ``(D, 2)`` block, :data:`SYMMETRY_PRODUCTS` products, not counted in
            ``num_products``) and refuse a non-symmetric operator. ``False`` skips it.
        symmetry_rtol: tolerance of that check on the relative asymmetry
            ``|uᵀHv − vᵀHu| / (‖u‖‖Hv‖ + ‖v‖‖Hu‖)``; default ``√eps + √D·eps`` of the dtype.

    Returns:
        :class:`EighResult`, eigenpairs sorted by ``|λ|`` descending (``which="LM"``),
        descending (``"LA"``) or ascending (``"SA"``), eigenvectors factored as ``Q @ V``.
        Products spent: ``inner`` (singlepass), ``outer + inner`` (tropp),
        ``outer·(2 + power_iters)`` (hmt; ``+ SHIFT_STEPS`` for ``"LA"``/``"SA"``),
        ``outer`` (nystrom), ``inner`` rounded up to
        whole blocks (krylov); ``num_products`` counts these (the sketch), not the
        :data:`SYMMETRY_PRODUCTS` of the symmetry check. ``"hmt"`` and ``"krylov"`` results
        also carry ``ritz_values`` and ``residual_norms``
        (:meth:`EighResult.eigenvalue_bounds`).

    Raises:
        AsymmetricOperatorError: (a ``ValueError``) the operator is not symmetric.
        ValueError: bad sizes or names, non-square operator, dtype/device mismatch,
            non-finite measurements (the error names the block), or an indefinite
            operator with ``recovery="nystrom"``.

    Example:
        A symmetric matrix with eigenvalues 40, −30, 20 over a small bulk: krylov finds the
        three largest |λ| (signs kept) and their error bars; ``which="SA"`` the most
        negative one:

        >>> import torch
        >>> from curvsketch import seigh
        >>> g = torch.Generator().manual_seed(0)
        >>> u = torch.linalg.qr(torch.randn(200, 200, generator=g, dtype=torch.float64)).Q
        >>> lam = torch.cat([torch.tensor([40.0, -30.0, 20.0]), torch.rand(197, generator=g)])
        >>> H = (u * lam.double()) @ u.T
        >>> res = seigh(H, 3, 60, recovery="krylov", progress=False)
        >>> [round(float(x), 6) for x in res.eigenvalues]
        [40.0, -30.0, 20.0]
        >>> lower, upper = res.eigenvalue_bounds()
        >>> bool(((lower <= res.eigenvalues) & (res.eigenvalues <= upper)).all())
        True
        >>> sa = seigh(H, 1, 60, recovery="krylov", which="SA", progress=False)
        >>> round(float(sa.eigenvalues[0]), 6)
        -30.0
    """
    op = check_operator(op, "seigh")
    plan = make_plan(
        op,
        outer,
        inner,
        recovery=recovery,
        noise=noise,
        seed=seed,
        block_size=block_size,
        power_iters=power_iters,
        which=which,
        dtype=dtype,
        device=device,
    )
    if not isinstance(check_symmetry, bool):
        raise ValueError(f"check_symmetry must be True or False, got {check_symmetry!r}")
    if plan.recovery == "krylov" and memory_budget is not None:
        if out_of_core(plan, store, memory_budget):
            return solve_krylov_out_of_core(
                op,
                plan,
                store=store,
                memory_budget=memory_budget,
                progress=progress,
                check_symmetry=check_symmetry,
                symmetry_rtol=symmetry_rtol,
            )
        memory_budget = None  # the basis fits: the stored recovery in memory
    if store is not None or memory_budget is not None:
        return solve_stored(
            op,
            plan,
            store=store,
            memory_budget=memory_budget,
            progress=progress,
            check_symmetry=check_symmetry,
            symmetry_rtol=symmetry_rtol,
        )
    return solve(
        op, plan, progress=progress, check_symmetry=check_symmetry, symmetry_rtol=symmetry_rtol
    )


def solve(
    op: Any,
    plan: SketchPlan,
    *,
    progress: bool = True,
    check_symmetry: bool = True,
    symmetry_rtol: float | None = None,
) -> EighResult:
    """Run ``plan`` on ``op`` in memory: the symmetry check, the plan's recovery, the result.

    Args:
        op: the operator the plan was made for (:func:`~curvsketch.sketch.plan.make_plan`).
        plan: the validated :class:`~curvsketch.sketch.plan.SketchPlan`.
        progress: products done / total, rate and ETA on stderr.
        check_symmetry: spend :data:`SYMMETRY_PRODUCTS` products on
            :func:`~curvsketch.sketch.symmetry.check_symmetric` first.
        symmetry_rtol: its tolerance (see :func:`seigh`).

    Returns:
        The :class:`EighResult` (see :func:`seigh`).
    """
    if check_symmetry:
        width = min(plan.block_size, SYMMETRY_PRODUCTS)
        check_symmetric(op, "seigh", rtol=symmetry_rtol, block_size=width)
    recovery = get_recovery(plan.recovery)
    timings: dict[str, float] = {}
    with Progress(plan.num_products, plan.describe(), enabled=progress, unit="products") as bar:
        factors = recovery(op, plan, bar, timings)
    return to_result(plan, factors, timings)
