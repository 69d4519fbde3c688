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
"""

from __future__ import annotations

from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.measure import apply_in_blocks, block_ranges, column_major, measure_block
from curvsketch.sketch.noise import (
    STREAM_OMEGA,
    STREAM_PHI,
    STREAM_PSI,
    NoiseOperator,
    make_noise,
)
from curvsketch.sketch.recovery import (
    Factors,
    orthonormal_basis,
    recover_hmt,
    recover_nystrom,
    recover_singlepass,
    stage_timer,
)
from curvsketch.sketch.result import EighResult
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
    "measure_outer",
    "measure_singlepass",
    "seigh",
]

RECOVERIES = ("singlepass", "tropp", "hmt", "nystrom")
#: Stream names of the test operators under the user seed. The outer test vectors of
#: "singlepass", "hmt" and "nystrom" are rows of ``Ψ``, so equal seeds give equal outer
#: sketches; "tropp" draws its outer test vectors from the independent stream ``Ω``.
_CORE_RECOVERIES = ("singlepass", "tropp")


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
    if recovery not in _CORE_RECOVERIES:
        if inner is not None:
            raise ValueError(
                f"inner={inner!r} is only used by recovery='singlepass' or 'tropp'; leave "
                f"inner=None with recovery={recovery!r}"
            )
        return outer, None, power_iters
    if inner is None:
        return outer, min(2 * outer, dim), power_iters
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


def measure_singlepass(
    op: Any,
    psi: NoiseOperator,
    phi: NoiseOperator,
    outer: int,
    *,
    block_size: int,
    dtype: torch.dtype,
    device: torch.device,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Measure the single-pass sketches ``Y = H Ψ[:outer]ᵀ`` and ``Z = Φ H Ψᵀ`` in memory.

    One product per row of ``Ψ`` (``s = psi.num_rows``), in blocks of ``block_size``; the
    first ``outer`` products are kept whole as ``Y``.

    Returns:
        ``(Y, Z)`` of shapes ``(D, outer)`` and ``(phi.num_rows, s)``.
    """
    dim, s = op.shape[0], psi.num_rows
    y_all = column_major((dim, outer), dtype=dtype, device=device)
    z_all = torch.empty((phi.num_rows, s), dtype=dtype, device=device)
    for i0, i1 in block_ranges(0, s, block_size):
        y, z = measure_block(op, psi, i0, i1, inner=phi, dtype=dtype, device=device)
        assert z is not None
        z_all[:, i0:i1] = z
        if i0 < outer:
            y_all[:, i0 : min(i1, outer)] = y[:, : min(i1, outer) - i0]
        if progress is not None:
            progress.update(i1 - i0)
    return y_all, z_all


def measure_outer(
    op: Any,
    omega: NoiseOperator,
    outer: int,
    *,
    block_size: int,
    dtype: torch.dtype,
    device: torch.device,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Measure the outer sketch ``Y = H Ω[:outer]ᵀ`` in memory, in blocks.

    Returns:
        ``Y`` of shape ``(D, outer)``.
    """
    y_all = column_major((op.shape[0], outer), dtype=dtype, device=device)
    for i0, i1 in block_ranges(0, outer, block_size):
        y_all[:, i0:i1] = measure_block(op, omega, i0, i1, dtype=dtype, device=device)[0]
        if progress is not None:
            progress.update(i1 - i0)
    return y_all


def _single_pass(
    op: Any, recovery: str, noise: str, seed: int, outer: int, inner: int, ctx: dict[str, Any]
) -> Factors:
    """``"singlepass"`` (shared outer vectors) or ``"tropp"`` (independent ``Ω``)."""
    dim, timings, block = op.shape[0], ctx["timings"], ctx["block_size"]
    psi = make_noise(noise, inner, dim, seed, STREAM_PSI)
    phi = make_noise(noise, inner, dim, seed, STREAM_PHI)
    kw = {"block_size": block, "dtype": ctx["dtype"], "device": ctx["device"]}
    with stage_timer(timings, "measure"):
        if recovery == "tropp":
            omega = make_noise(noise, outer, dim, seed, STREAM_OMEGA)
            y = measure_outer(op, omega, outer, progress=ctx["bar"], **kw)
            _, z = measure_singlepass(op, psi, phi, 0, progress=ctx["bar"], **kw)
        else:
            y, z = measure_singlepass(op, psi, phi, outer, progress=ctx["bar"], **kw)
    return recover_singlepass(y, z, phi, psi, block_size=block, timings=timings)


def _hmt(
    op: Any, noise: str, seed: int, outer: int, power_iters: int, ctx: dict[str, Any]
) -> Factors:
    """Range finder, ``power_iters`` subspace iterations, Rayleigh–Ritz."""
    timings, block, bar = ctx["timings"], ctx["block_size"], ctx["bar"]
    psi = make_noise(noise, outer, op.shape[0], seed, STREAM_PSI)
    with stage_timer(timings, "measure"):
        y = measure_outer(
            op, psi, outer, block_size=block, dtype=ctx["dtype"], device=ctx["device"], progress=bar
        )
    with stage_timer(timings, "qr"):
        q = orthonormal_basis(y)
        del y
    for it in range(power_iters):
        with stage_timer(timings, "measure"):
            what = f"op @ Q (power iteration {it + 1})"
            hq = apply_in_blocks(op, q, block, what=what, on_block=bar.update)
        with stage_timer(timings, "qr"):
            q = orthonormal_basis(hq)
            del hq
    with stage_timer(timings, "measure"):
        hq = apply_in_blocks(op, q, block, what="op @ Q (Rayleigh-Ritz)", on_block=bar.update)
    return recover_hmt(q, hq, timings=timings)


def _nystrom(op: Any, noise: str, seed: int, outer: int, ctx: dict[str, Any]) -> Factors:
    """Stabilised Nyström from ``outer`` products."""
    dtype, device = ctx["dtype"], ctx["device"]
    psi = make_noise(noise, outer, op.shape[0], seed, STREAM_PSI)
    with stage_timer(ctx["timings"], "measure"):
        y = measure_outer(
            op,
            psi,
            outer,
            block_size=ctx["block_size"],
            dtype=dtype,
            device=device,
            progress=ctx["bar"],
        )
    omega = psi.columns(0, outer, dtype=dtype, device=device)
    return recover_nystrom(y, omega, timings=ctx["timings"])


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
) -> EighResult | None:
    """Sketched eigendecomposition of a symmetric operator ``H`` seen only through ``H @ X``.

    Single pass (default; Fernandez et al., TMLR 2025, §3, Alg. 2, after Tropp, Yurtsever,
    Udell, Cevher 2019): with test operators ``Ψ, Φ`` (``s × D``), measure ``y_i = H ψ_i`` for
    ``i < s`` (``s = inner``), ``Z = Φ [y_0 … y_{s−1}]`` and ``Y = [y_0 … y_{o−1}]``;
    ``Q = orth(Y)``, ``C = (ΦQ)⁺ Z ((ΨQ)ᵀ)⁺`` (least squares), ``(C + Cᵀ)/2 = W Λ Wᵀ``,
    ``H ≈ (QW) Λ (QW)ᵀ``. ``"tropp"``, ``"hmt"`` and ``"nystrom"``: see the module
    docstring. On very large operators whose small eigenvalues share a sign (a bulk with a
    non-zero mean), ``"singlepass"`` can be far off: check it with
    :func:`curvsketch.sketch.aposteriori_error` and prefer ``"tropp"`` there.

    Args:
        op: symmetric ``D × D`` operator (``.shape``, ``.dtype``, ``.device``, ``@``) or a
            tensor/array (wrapped with :func:`curvsketch.operators.protocol.as_operator`).
        outer: ``o``, the number of eigenpairs (outer sketch size).
        inner: ``s`` for ``"singlepass"``/``"tropp"`` (default ``min(2·outer, D)``); must
            be ``None`` for the other recoveries.
        recovery: ``"singlepass"``, ``"tropp"``, ``"hmt"`` or ``"nystrom"`` (PSD only).
        noise: test operator: ``"ssrft"``, ``"gaussian"`` or ``"rademacher"``.
        seed: seed of the test operators; equal seeds give bitwise-equal test vectors.
        block_size: test vectors per operator product (default ``min(64, products)``).
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

    Returns:
        :class:`EighResult`, eigenpairs sorted by ``|λ|`` descending, eigenvectors factored
        as ``Q @ V``. Products spent: ``inner`` (singlepass), ``outer + inner`` (tropp),
        ``outer·(2 + power_iters)`` (hmt), ``outer`` (nystrom). ``"hmt"`` results also
        carry ``ritz_values`` and ``residual_norms`` (:meth:`EighResult.eigenvalue_bounds`).

    Raises:
        ValueError: bad sizes or names, non-square operator, dtype/device mismatch,
            non-finite measurements (the error names the block), or an indefinite
            operator with ``recovery="nystrom"``.
    """
    op = check_operator(op, "seigh")
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
        )
    if op.shape[0] != op.shape[1]:
        raise ValueError(
            f"seigh needs a square symmetric operator, got shape {tuple(op.shape)}; use "
            "curvsketch.sketch.ssvd for rectangular operators"
        )
    if recovery not in RECOVERIES:
        raise ValueError(f"recovery={recovery!r} is not one of {', '.join(RECOVERIES)}")
    dim = int(op.shape[0])
    outer, inner, power_iters = _check_sizes(dim, outer, inner, recovery, power_iters)
    noise = check_noise(noise)
    seed = check_seed(seed)
    dtype, device = resolve_dtype_device(op, dtype, device, "seigh")
    num_products = {
        "singlepass": inner or 0,
        "tropp": outer + (inner or 0),
        "hmt": outer * (2 + power_iters),
        "nystrom": outer,
    }[recovery]
    block = check_block_size(block_size, num_products)

    timings: dict[str, float] = {}
    desc = f"seigh[{recovery}] products"
    with Progress(num_products, desc, enabled=progress, unit="products") as bar:
        ctx = {"timings": timings, "block_size": block, "dtype": dtype, "device": device}
        ctx["bar"] = bar
        if recovery in _CORE_RECOVERIES:
            assert inner is not None
            factors = _single_pass(op, recovery, noise, seed, outer, inner, ctx)
        elif recovery == "hmt":
            factors = _hmt(op, noise, seed, outer, power_iters, ctx)
        else:
            factors = _nystrom(op, noise, seed, outer, ctx)
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
) -> EighResult | None:
    """``seigh(..., store=...)``: measure the missing blocks into the store, then recover."""
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
    )
    rank, _, under_dist = distributed_worker(None, None)
    if under_dist and rank != 0:
        return None
    return recover(st, memory_budget=memory_budget, device=op.device, timings=timings)
