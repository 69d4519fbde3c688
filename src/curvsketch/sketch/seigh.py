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
  (:func:`curvsketch.sketch.recovery.recover_hmt`).
* ``"nystrom"``: PSD operators only (GGN): Tropp, Yurtsever, Udell, Cevher, "Fixed-rank
  approximation of a positive-semidefinite matrix from streaming data", NeurIPS 2017,
  Alg. 3, with its stabilising shift.
* ``"krylov"``: randomized block Krylov (Musco & Musco, NeurIPS 2015, Alg. 2) from a block
  of ``block_size`` test vectors, ``inner`` products in all, Rayleigh–Ritz with free
  residuals (:func:`curvsketch.sketch.krylov.block_krylov`): for hundreds to thousands of
  eigenpairs of a slowly decaying spectrum to high accuracy.
"""

from __future__ import annotations

from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.noise import STREAM_OMEGA, STREAM_PHI, STREAM_PSI
from curvsketch.sketch.passes import (
    hmt_pass,
    krylov_pass,
    measure_outer,
    measure_singlepass,
    nystrom_pass,
    single_pass,
)
from curvsketch.sketch.result import EighResult
from curvsketch.sketch.symmetry import SYMMETRY_PRODUCTS, check_symmetric
from curvsketch.sketch.validate import (
    check_block_size,
    check_count,
    check_noise,
    check_operator,
    check_seed,
    resolve_dtype_device,
)

__all__ = [
    "RECOVERIES",
    "STREAM_OMEGA",
    "STREAM_PHI",
    "STREAM_PSI",
    "SYMMETRY_PRODUCTS",
    "measure_outer",
    "measure_singlepass",
    "seigh",
]

RECOVERIES = ("singlepass", "tropp", "hmt", "nystrom", "krylov")
#: Stream names of the test operators under the user seed. The outer test vectors of
#: "singlepass", "hmt" and "nystrom" are rows of ``Ψ``, so equal seeds give equal outer
#: sketches; "tropp" draws its outer test vectors from the independent stream ``Ω``.
_CORE_RECOVERIES = ("singlepass", "tropp")
#: Largest default Krylov block, and the fewest blocks a default Krylov basis has.
KRYLOV_BLOCK, KRYLOV_MIN_DEPTH = 64, 8
#: Recoveries that take ``inner``: the inner sketch size, or the Krylov basis size.
_INNER_RECOVERIES = (*_CORE_RECOVERIES, "krylov")


def _check_sizes(
    dim: int, outer: Any, inner: Any, recovery: str, power_iters: Any
) -> tuple[int, int | None, int]:
    outer = check_count("outer", outer, 1, "the number of eigenpairs to sketch")
    if outer > dim:
        raise ValueError(
            f"outer={outer} exceeds the operator's dimension D={dim}; at most D eigenpairs "
            f"exist: use outer <= {dim}"
        )
    power_iters = check_count("power_iters", power_iters, 0, "subspace iterations")
    if power_iters and recovery != "hmt":
        raise ValueError(
            f"power_iters={power_iters} needs recovery='hmt' (the only multi-pass recovery); "
            f"use power_iters=0 with recovery={recovery!r}"
        )
    if recovery not in _INNER_RECOVERIES:
        if inner is not None:
            raise ValueError(
                f"inner={inner!r} is only used by recovery='singlepass', 'tropp' or 'krylov'; "
                f"leave inner=None with recovery={recovery!r}"
            )
        return outer, None, power_iters
    if inner is None:
        return outer, min(2 * outer, dim), power_iters
    if recovery == "krylov":
        inner = check_count("inner", inner, 1, "the Krylov basis size m (products)")
        if inner < outer:
            raise ValueError(
                f"inner={inner} must be >= outer={outer}: the Krylov basis (inner columns) "
                f"holds the outer Ritz pairs; e.g. inner = 2*outer = {2 * outer}"
            )
        if inner > dim:
            raise ValueError(f"inner={inner} exceeds the operator's dimension D={dim}")
        return outer, inner, power_iters
    inner = check_count("inner", inner, 1, "the inner sketch size s; the paper uses 2*outer")
    if inner < outer:
        raise ValueError(
            f"inner={inner} must be >= outer={outer} (the core solve needs ΨQ of full "
            f"column rank); the paper uses inner = 2*outer = {2 * outer}"
        )
    if inner > dim:
        raise ValueError(
            f"inner={inner} exceeds the operator's dimension D={dim}; cap it: "
            f"inner=min(inner, D) = {dim}"
        )
    return outer, inner, power_iters


def _krylov_blocks(dim: int, inner: int, block_size: Any) -> tuple[int, int]:
    """``(blocks, width)``: the Krylov block is ``block_size``, by default
    ``min(64, ⌈inner/8⌉)`` (at least 8 blocks deep: a Krylov space needs depth);
    ``inner`` is rounded up to whole blocks."""
    if block_size is None:
        width = max(1, min(KRYLOV_BLOCK, -(-inner // KRYLOV_MIN_DEPTH)))
    else:
        width = check_block_size(block_size, inner)
    blocks = -(-inner // width)
    if blocks * width > dim:
        raise ValueError(
            f"inner={inner} in Krylov blocks of block_size={width} rounds up to "
            f"{blocks * width} columns, more than D={dim}: use inner <= {dim // width * width} "
            "or a block_size that divides inner"
        )
    return blocks, width


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
        dtype: must be ``None`` or ``op.dtype``.
        device: must be ``None`` or ``op.device``.
        progress: report products done / total, rate and ETA on stderr (blocks with
            ``store=``, reused blocks included).
        store: ``"singlepass"`` only: a local path (Zarr v3), ``"memory"`` or a
            :class:`curvsketch.store.MeasurementStore`. Blocks are committed to it as they
            are measured; blocks already there (same run: the store checks the operator
            fingerprint and all settings) are reused bitwise, so a killed run resumes where
            it stopped and ends with the uninterrupted result. Under an initialised
            ``torch.distributed`` (``torchrun``) the ranks split the blocks and rank 0
            recovers: other ranks return ``None``. See :mod:`curvsketch.sketch.stored`.
        memory_budget: bytes (with a store path): when the ``D × o`` outer sketch is larger,
            QR, core and eigenvectors run out of core and the result's ``Q`` is a
            :class:`curvsketch.store.ZarrMatrix` of the eigenvectors on disk.
        check_symmetry: before sketching, compare ``uᵀHv`` with ``vᵀHu`` for two fixed
            test vectors (:func:`curvsketch.sketch.symmetry.check_symmetric`: one call on a
            ``(D, 2)`` block, :data:`SYMMETRY_PRODUCTS` products, not counted in
            ``num_products``) and refuse a non-symmetric operator. ``False`` skips it.
        symmetry_rtol: tolerance of that check on the relative asymmetry
            ``|uᵀHv − vᵀHu| / (‖u‖‖Hv‖ + ‖v‖‖Hu‖)``; default ``√eps + √D·eps`` of the dtype.

    Returns:
        :class:`EighResult`, eigenpairs sorted by ``|λ|`` descending, eigenvectors factored
        as ``Q @ V``. Products spent: ``inner`` (singlepass), ``outer + inner`` (tropp),
        ``outer·(2 + power_iters)`` (hmt), ``outer`` (nystrom), ``inner`` rounded up to
        whole blocks (krylov); ``num_products`` counts these (the sketch), not the
        :data:`SYMMETRY_PRODUCTS` of the symmetry check. ``"hmt"`` and ``"krylov"`` results
        also carry ``ritz_values`` and ``residual_norms``
        (:meth:`EighResult.eigenvalue_bounds`).

    Raises:
        AsymmetricOperatorError: (a ``ValueError``) the operator is not symmetric.
        ValueError: bad sizes or names, non-square operator, dtype/device mismatch,
            non-finite measurements (the error names the block), or an indefinite
            operator with ``recovery="nystrom"``.
    """
    op = check_operator(op, "seigh")
    if len(op.shape) != 2 or op.shape[0] != op.shape[1]:
        raise ValueError(
            f"seigh needs a square symmetric operator, got shape {tuple(op.shape)}; use "
            "curvsketch.sketch.ssvd for rectangular operators"
        )
    if not isinstance(check_symmetry, bool):
        raise ValueError(f"check_symmetry must be True or False, got {check_symmetry!r}")

    def guard() -> None:
        if check_symmetry:
            width = check_block_size(block_size, SYMMETRY_PRODUCTS)
            check_symmetric(op, "seigh", rtol=symmetry_rtol, block_size=width)

    if store is not None or memory_budget is not None:
        return _seigh_stored(
            op,
            outer,
            inner,
            recovery,
            noise,
            seed,
            block_size,
            power_iters,
            dtype,
            device,
            progress,
            store,
            memory_budget,
            guard,
        )
    if recovery not in RECOVERIES:
        raise ValueError(f"recovery={recovery!r} is not one of {', '.join(RECOVERIES)}")
    dim = int(op.shape[0])
    outer, inner, power_iters = _check_sizes(dim, outer, inner, recovery, power_iters)
    noise = check_noise(noise)
    seed = check_seed(seed)
    dtype, device = resolve_dtype_device(op, dtype, device, "seigh")
    if recovery == "krylov":
        assert inner is not None
        blocks, block = _krylov_blocks(dim, inner, block_size)
        num_products = inner = blocks * block
    else:
        num_products = {
            "singlepass": inner or 0,
            "tropp": outer + (inner or 0),
            "hmt": outer * (2 + power_iters),
            "nystrom": outer,
        }[recovery]
        block = check_block_size(block_size, num_products)
    guard()  # arguments are valid: spend the two products of the symmetry check

    timings: dict[str, float] = {}
    desc = f"seigh[{recovery}] products"
    with Progress(num_products, desc, enabled=progress, unit="products") as bar:
        ctx = {"timings": timings, "block_size": block, "dtype": dtype, "device": device}
        ctx["bar"] = bar
        if recovery in _CORE_RECOVERIES:
            assert inner is not None
            factors = single_pass(op, recovery, noise, seed, outer, inner, ctx)
        elif recovery == "hmt":
            factors = hmt_pass(op, noise, seed, outer, power_iters, ctx)
        elif recovery == "krylov":
            factors = krylov_pass(op, noise, seed, outer, blocks, block, ctx)
        else:
            factors = nystrom_pass(op, noise, seed, outer, ctx)
    for stage in ("measure", "qr", "core", "eigh", "eigvec"):
        timings.setdefault(stage, 0.0)
    return EighResult(
        eigenvalues=factors.values,
        Q=factors.basis,
        V=factors.rot,
        recovery=recovery,
        noise=noise,
        seed=seed,
        outer=outer,
        inner=inner,
        power_iters=power_iters,
        num_products=num_products,
        timings=timings,
        ritz_values=factors.ritz,
        residual_norms=factors.residuals,
    )


def _seigh_stored(
    op: Any,
    outer: int,
    inner: int | None,
    recovery: str,
    noise: str,
    seed: int,
    block_size: int | None,
    power_iters: int,
    dtype: torch.dtype | None,
    device: torch.device | str | None,
    progress: bool,
    store: Any,
    memory_budget: int | None,
    guard: Any,
) -> EighResult | None:
    """``seigh(..., store=...)``: measure the missing blocks into the store, then recover.

    ``guard()`` runs the symmetry check of :func:`seigh` before any product of the store
    (the store's own checks of sizes and identity run inside :func:`.stored.measure`).
    """
    from curvsketch.sketch.stored import distributed_worker, measure, recover

    if store is None:
        raise ValueError(
            f"memory_budget={memory_budget!r} needs store=PATH (the out-of-core recovery keeps "
            "the sketch and its basis on disk)"
        )
    if recovery != "singlepass" or power_iters:
        raise ValueError(
            f"store= supports recovery='singlepass' only, got recovery={recovery!r}"
            f"{f', power_iters={power_iters}' if power_iters else ''}; use store=None for "
            "'tropp', 'hmt' and 'nystrom' (they measure in memory)"
        )
    resolve_dtype_device(op, dtype, device, "seigh")
    guard()
    timings: dict[str, float] = {}
    st = measure(
        op,
        outer,
        inner,
        store=store,
        noise=noise,
        seed=seed,
        block_size=block_size,
        progress=progress,
        timings=timings,
        check_symmetry=False,  # guard() above has checked
    )
    rank, _, under_dist = distributed_worker(None, None)
    if under_dist and rank != 0:
        return None
    return recover(st, memory_budget=memory_budget, device=op.device, timings=timings)
