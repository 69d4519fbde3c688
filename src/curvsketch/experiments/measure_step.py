"""One analysed state of the study: curvature eigenpairs and mask overlaps at one step.

For a trained network at step t and one Hessian sample set (train or test), this module
computes what ``docs/paper.md`` §4 reports: the exact eigendecomposition when D is small,
the sketched one (SEIGH, §3) with its a-posteriori error, overlap curves for k = 1..o of
magnitude, random, best and other score masks against the top-k eigenspaces (§2), and the
seven Grassmann metrics at chosen ρ, and the trace (with its standard error) and the
spectral density of the curvature (:func:`spectrum_estimates`). It is the one place that
composes operators, sketch and analysis for a single state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from curvsketch.analysis import (
    best_overlap_curve,
    check_basis,
    diag_h2,
    grassmann_metrics,
    magnitude_mask,
    magnitude_order,
    overlap_curve,
    random_overlap_curve,
    score_overlap_curve,
)
from curvsketch.experiments.config import StudyConfig
from curvsketch.experiments.spectrum_estimates import spectrum_estimates
from curvsketch.operators import GGNOperator, HessianOperator, as_operator, dense_matrix
from curvsketch.sketch import (
    EighResult,
    SketchPlan,
    aposteriori_error,
    diagonal,
    make_plan,
)
from curvsketch.sketch.seigh import solve

__all__ = [
    "StepAnalysis",
    "analyse_step",
    "curvature_operator",
    "exact_top_eigenpairs",
    "sketch_eigenpairs",
    "study_plan",
]


DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class StepAnalysis:
    """What one (step, split) produced: a JSON record, arrays, and bases for stability."""

    record: dict[str, Any]
    arrays: dict[str, torch.Tensor]
    bases: dict[str, torch.Tensor] = field(default_factory=dict)


def curvature_operator(
    hessian: Any, model: nn.Module, loss_fn: Any, data: Any, **kwargs: Any
) -> HessianOperator | GGNOperator:
    """The operator a study's ``[hessian]`` section asks for: the Hessian or the GGN of
    ``loss_fn`` over ``data``, with its engine and micro-batch size.

    Args:
        hessian: the ``config.hessian`` section (``kind``, ``engine``, ``micro_batch_size``).
        model: the network, already in the dtype of the products and in eval mode.
        loss_fn: mean-reduced loss.
        data: the samples, as accepted by :class:`curvsketch.HessianOperator`.
        **kwargs: passed on (e.g. ``check_determinism=False``).
    """
    cls = HessianOperator if hessian.kind == "hessian" else GGNOperator
    return cls(
        model,
        loss_fn,
        data,
        engine=hessian.engine,
        micro_batch_size=hessian.micro_batch_size,
        **kwargs,
    )


def exact_top_eigenpairs(
    H: torch.Tensor, o: int, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``o`` eigenpairs of largest ``|λ|`` of a dense symmetric matrix, by ``|λ|``.

    Args:
        H: the symmetric matrix.
        o: how many eigenpairs.
        dtype: dtype of the decomposition (default ``H``'s); results come back in ``H``'s.
    """
    evals, evecs = _dense_eigh(H, dtype)
    return _top_by_magnitude(H, evals, evecs, o)


def _dense_eigh(H: torch.Tensor, dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """All eigenpairs of the symmetric ``H`` (in ``dtype``, default ``H``'s), ascending."""
    A = H if dtype is None else H.to(dtype)
    if A.device.type == "cpu":
        # LAPACK's divide and conquer through scipy: 35 s against torch's 50 s for a
        # 7,030 x 7,030 float32 matrix on 2 cores (measured side by side).
        import scipy.linalg

        w, Z = scipy.linalg.eigh(
            A.numpy(), driver="evd", check_finite=False, overwrite_a=A is not H
        )
        evals, evecs = torch.from_numpy(w), torch.from_numpy(Z)
    else:
        evals, evecs = torch.linalg.eigh(A)
    return evals, evecs


def _top_by_magnitude(
    H: torch.Tensor, evals: torch.Tensor, evecs: torch.Tensor, o: int
) -> tuple[torch.Tensor, torch.Tensor]:
    order = evals.abs().argsort(descending=True)[:o]
    U = evecs[:, order].to(H.dtype)
    if U.dtype != evecs.dtype:
        # Re-orthonormalise at the working precision. Gram-Schmidt order keeps the span of
        # every leading block U[:, :k]; signs are fixed so that U stays close to the input.
        U, R = torch.linalg.qr(U)
        U = U * torch.sign(R.diagonal())
    return evals[order].to(H.dtype), U


def eigenvalue_error(exact: torch.Tensor, sketched: torch.Tensor) -> float:
    """Largest relative error of ``exact`` eigenvalues, each matched to the nearest sketched one.

    Matching by value rather than by rank keeps a pair ``±λ`` of (nearly) equal magnitude
    from being compared crosswise when the sketch orders them the other way, while a sign
    error still counts (no sketched value lies near ``λ``).
    """
    dist = (exact[:, None] - sketched[None, :]).abs().min(dim=1).values
    return float((dist / exact.abs()).max())


def study_plan(op: Any, sketch: Any) -> SketchPlan:
    """The :class:`curvsketch.sketch.SketchPlan` of a study's ``[sketch]`` settings on ``op``.

    ``outer`` and ``inner`` are capped at ``D``; ``inner`` defaults to ``2·outer`` for the
    recoveries that take one (``singlepass``/``tropp``, ``krylov``) and is ignored by the
    others (:func:`curvsketch.sketch.make_plan` with ``cap_to_dim=True``); ``which``
    (``[sketch] which``, default ``"LM"``) picks the end of the spectrum.
    """
    return make_plan(
        op,
        sketch.outer,
        sketch.inner,
        recovery=sketch.recovery,
        noise=sketch.noise,
        seed=sketch.seed,
        block_size=sketch.block_size,
        power_iters=sketch.power_iters,
        which=getattr(sketch, "which", "LM"),
        cap_to_dim=True,
    )


def sketch_eigenpairs(op: Any, sketch: Any, *, progress: bool = False) -> EighResult:
    """:func:`curvsketch.seigh` of ``op`` with a study's ``[sketch]`` settings
    (:func:`study_plan`)."""
    op = as_operator(op)
    return solve(op, study_plan(op, sketch), progress=progress)


def _at(curve: torch.Tensor, ks: list[int]) -> dict[str, float]:
    return {str(k): float(curve[k - 1]) for k in ks if k <= curve.numel()}


def analyse_step(
    model: nn.Module,
    loss_fn: Any,
    data: tuple[torch.Tensor, torch.Tensor],
    config: StudyConfig,
    *,
    step: int,
    split: str,
    progress: bool = True,
) -> StepAnalysis:
    """Analyse the curvature of ``model`` on ``data`` at one training step.

    Args:
        model: the network at that step (its dtype is changed for the products, then
            restored).
        loss_fn: mean-reduced loss.
        data: the Hessian samples ``(X, y)``.
        config: the study configuration.
        step: the training step (for the record).
        split: ``"train"`` or ``"test"`` (for the record).
        progress: show progress of the products.

    Returns:
        A :class:`StepAnalysis`.
    """
    h, s, a = config.hessian, config.sketch, config.analysis
    dtype = DTYPES[h.dtype]
    orig_dtype = next(model.parameters()).dtype
    model.to(dtype)
    try:
        op = curvature_operator(h, model, loss_fn, data)
        D = op.shape[0]
        plan = study_plan(op, s)  # every size of the sketch, validated once
        outer = plan.outer
        theta = op.parameter_vector()
        timings: dict[str, float] = {}
        use_exact = h.exact == "true" or (h.exact == "auto" and h.max_exact_dim >= D)
        arrays: dict[str, torch.Tensor] = {"theta_order": magnitude_order(theta, outer)}
        bases: dict[str, torch.Tensor] = {}
        record: dict[str, Any] = {"step": step, "split": split, "D": D, "outer": outer}

        exact_U = exact_spectrum = None
        if use_exact:
            t0 = time.perf_counter()
            exact_dtype = DTYPES[h.exact_dtype]
            model.to(exact_dtype)
            H = dense_matrix(curvature_operator(h, model, loss_fn, data))
            H = ((H + H.T) / 2).to(dtype)
            model.to(dtype)
            timings["exact_products"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            all_lam, all_U = _dense_eigh(H, exact_dtype)
            lam, exact_U = _top_by_magnitude(H, all_lam, all_U, outer)
            exact_spectrum = all_lam.to(torch.float64).cpu()
            del all_U
            timings["exact_eigh"] = time.perf_counter() - t0
            arrays["eigenvalues_exact"] = lam
            del H
        t0 = time.perf_counter()
        res = solve(op, plan, progress=progress)
        timings["sketch_total"] = time.perf_counter() - t0
        timings.update({f"sketch_{k}": v for k, v in res.timings.items()})
        t0 = time.perf_counter()
        err = aposteriori_error(op, res, num_tests=s.error_tests, seed=s.seed, progress=False)
        timings["aposteriori"] = time.perf_counter() - t0
        arrays["eigenvalues_sketched"] = res.eigenvalues
        record["num_products"] = res.num_products
        record["error"] = {k: v for k, v in err.to_dict().items() if k != "residual_samples"}
        products = {"sketch": res.num_products, "aposteriori": int(err.num_tests)}

        spec = spectrum_estimates(
            op,
            a,
            result=res,
            seed=s.seed,
            block_size=s.block_size,
            exact_eigenvalues=exact_spectrum,
        )
        record.update(spec.record)
        arrays.update(spec.arrays)
        timings.update(spec.timings)
        products.update(spec.products)

        ks = [k for k in a.ks if k <= outer]
        bases_by_kind = {"sketched": res}
        if exact_U is not None:
            bases_by_kind["exact"] = exact_U
        overlaps: dict[str, dict[str, dict[str, float]]] = {}
        scores: dict[str, torch.Tensor] = {"magnitude": theta.abs()}
        t0 = time.perf_counter()
        if "gradient" in a.scores:
            scores["gradient"] = op.gradient().abs()
        if "ggn_diag" in a.scores:
            ggn = GGNOperator(model, loss_fn, data, check_determinism=False)
            ggn_diag = diagonal(
                ggn, a.ggn_diag_probes, method="hutchinson", seed=s.seed, block_size=32
            )
            scores["ggn_diag"] = ggn_diag.values
            products["ggn_diag"] = ggn_diag.num_products
        timings["scores"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for kind, U in bases_by_kind.items():
            if "diag_h2" in a.scores:
                lam = arrays[f"eigenvalues_{kind}"]
                scores[f"diag_h2_{kind}"] = diag_h2(lam, U)
            check_basis(U, f"{kind} eigenvectors")  # once, not once per curve
            curves = {"magnitude": overlap_curve(theta, U, check=False)}
            mean, std = random_overlap_curve(U, n_draws=a.random_draws, seed=s.seed, check=False)
            curves["random_mean"], curves["random_std"] = mean, std
            curves["best"] = best_overlap_curve(U)
            for name in ("gradient", "ggn_diag"):
                if name in scores:
                    curves[name] = score_overlap_curve(scores[name], U, check=False)
            if "diag_h2" in a.scores:
                curves["diag_h2"] = score_overlap_curve(scores[f"diag_h2_{kind}"], U, check=False)
            for name, curve in curves.items():
                arrays[f"curve_{name}_{kind}"] = curve
                overlaps.setdefault(name, {})[kind] = _at(curve, ks)
        kk = torch.arange(1, outer + 1, dtype=torch.float64)
        arrays["curve_chance"] = kk / D
        overlaps["chance"] = {"any": _at(arrays["curve_chance"], ks)}
        record["overlap"] = overlaps
        timings["overlap_curves"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        metrics: dict[str, Any] = {}
        for rho in a.rhos:
            k = max(1, round(rho * D))
            if k > outer:
                continue
            mask = magnitude_mask(theta, k)
            entry: dict[str, Any] = {"k": k}
            for kind, U in bases_by_kind.items():
                Uk = U.top(k) if hasattr(U, "top") else U[:, :k]
                entry[kind] = grassmann_metrics(mask, Uk)
            metrics[str(rho)] = entry
        record["metrics"] = metrics
        timings["metrics"] = time.perf_counter() - t0

        kmax = min(max(a.stability_ks, default=1), outer)
        bases["sketched"] = res.top(kmax).eigenvectors.float().cpu()
        if exact_U is not None:
            bases["exact"] = exact_U[:, :kmax].float().cpu()
            lam_e, lam_s = arrays["eigenvalues_exact"], arrays["eigenvalues_sketched"]
            for n in (10, 50):
                if n <= outer:
                    record[f"top{n}_eigenvalue_max_rel_error"] = eigenvalue_error(lam_e[:n], lam_s)
        record["eigenvalues"] = {
            kind: arrays[f"eigenvalues_{kind}"][:20].tolist() for kind in bases_by_kind
        }
        record["timings"] = timings
        record["products"] = products
        arrays = {
            k: v.detach().double().cpu() if v.is_floating_point() else v.cpu()
            for k, v in arrays.items()
        }
        return StepAnalysis(record, arrays, bases)
    finally:
        model.to(orig_dtype)
