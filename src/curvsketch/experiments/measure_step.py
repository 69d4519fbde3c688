"""One analysed state of the study: curvature eigenpairs and mask overlaps at one step.

For a trained network at step t and one Hessian sample set (train or test), this module
computes what ``docs/paper.md`` §4 reports, in three parts of a frozen
:class:`~curvsketch.experiments.step_records.StepAnalysis`:

- :func:`eigen_part`: the exact eigendecomposition when D is small, the sketched one
  (SEIGH, §3) with its a-posteriori error, and the eigenvalue errors between them;
- the trace (with its standard error) and the spectral density of the curvature
  (:func:`~curvsketch.experiments.spectrum_estimates.spectrum_estimates`);
- :func:`overlap_part`: overlap curves for k = 1..o of magnitude, random, best and other
  score masks against the top-k eigenspaces (§2), and the seven Grassmann metrics at
  chosen ρ.

:func:`analyse_step` composes them; it is the one place that composes operators, sketch
and analysis for a single state. The model is never changed: every operator works on a
copy in its dtype (:func:`~curvsketch.experiments.study_operator.study_operator`).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import torch
from torch import nn

from curvsketch.analysis import (
    best_overlap_curve,
    check_basis,
    diag_h2,
    grassmann_metrics,
    magnitude_mask,
    overlap_curve,
    random_overlap_curve,
    score_overlap_curve,
)
from curvsketch.analysis.masks import magnitude_order
from curvsketch.experiments.config import StudyConfig
from curvsketch.experiments.spectrum_estimates import spectrum_estimates
from curvsketch.experiments.step_records import EigenPart, OverlapPart, SpectrumPart, StepAnalysis
from curvsketch.experiments.study_operator import (
    DTYPES,
    sketch_eigenpairs,
    study_operator,
    study_plan,
)
from curvsketch.operators import dense_matrix
from curvsketch.sketch import EighResult, aposteriori_error, diagonal
from curvsketch.sketch.seigh import solve

__all__ = [
    "Eigenbases",
    "StepAnalysis",
    "analyse_step",
    "eigen_part",
    "eigenvalue_error",
    "exact_top_eigenpairs",
    "overlap_part",
    "sketch_eigenpairs",
    "study_plan",
]


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
        # LAPACK's divide and conquer through scipy, faster than torch.linalg.eigh here
        # (measured: benchmarks/results/docstring_timings.md).
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


class Eigenbases(NamedTuple):
    """What :func:`eigen_part` hands on to the spectrum and overlap parts (in memory only).

    Attributes:
        bases: ``"sketched"`` → the :class:`~curvsketch.EighResult`, ``"exact"`` → the
            dense ``(D, outer)`` eigenvectors (when the exact reference ran).
        eigenvalues: the same kinds → their ``outer`` eigenvalues, in the working dtype.
        exact_spectrum: the whole exact spectrum (float64, CPU), or None.
    """

    bases: dict[str, Any]
    eigenvalues: dict[str, torch.Tensor]
    exact_spectrum: torch.Tensor | None


def _use_exact(config: StudyConfig, dim: int) -> bool:
    h = config.hessian
    return h.exact == "true" or (h.exact == "auto" and h.max_exact_dim >= dim)


def eigen_part(
    op: Any,
    config: StudyConfig,
    *,
    exact_op: Any = None,
    progress: bool = True,
) -> tuple[EigenPart, Eigenbases]:
    """The sketched (and exact) eigenpairs of ``op`` and the sketch's a-posteriori error.

    Args:
        op: the study's curvature operator (:func:`study_operator`).
        config: the study.
        exact_op: the same curvature in ``[hessian] exact_dtype``, densified for the exact
            reference when it is on (``[hessian] exact``; None: no exact reference).
        progress: show progress of the sketch's products.

    Returns:
        The :class:`EigenPart` and the :class:`Eigenbases` the other parts read.
    """
    h, s, a = config.hessian, config.sketch, config.analysis
    dim = int(op.shape[0])
    plan = study_plan(op, s)  # every size of the sketch, validated once
    outer = plan.outer
    timings: dict[str, float] = {}
    exact_U = exact_lam = exact_spectrum = None
    if exact_op is not None:
        t0 = time.perf_counter()
        H = dense_matrix(exact_op)
        H = ((H + H.T) / 2).to(op.dtype)
        timings["exact_products"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        all_lam, all_U = _dense_eigh(H, DTYPES[h.exact_dtype])
        exact_lam, exact_U = _top_by_magnitude(H, all_lam, all_U, outer)
        exact_spectrum = all_lam.to(torch.float64).cpu()
        del all_U, H
        timings["exact_eigh"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res: EighResult = solve(op, plan, progress=progress)
    timings["sketch_total"] = time.perf_counter() - t0
    timings.update({f"sketch_{k}": v for k, v in res.timings.items()})
    t0 = time.perf_counter()
    err = aposteriori_error(op, res, num_tests=s.error_tests, seed=s.seed, progress=False)
    timings["aposteriori"] = time.perf_counter() - t0

    bases: dict[str, Any] = {"sketched": res}
    eigenvalues = {"sketched": res.eigenvalues}
    kmax = min(max(a.stability_ks, default=1), outer)
    kept = {"sketched": res.top(kmax).eigenvectors.float().cpu()}
    errors: dict[int, float] = {}
    if exact_U is not None and exact_lam is not None:
        bases["exact"], eigenvalues["exact"] = exact_U, exact_lam
        kept["exact"] = exact_U[:, :kmax].float().cpu()
        for n in (10, 50):
            if n <= outer:
                errors[n] = eigenvalue_error(exact_lam[:n], res.eigenvalues)
    part = EigenPart(
        dim=dim,
        outer=outer,
        num_products=res.num_products,
        eigenvalues={k: v.detach().double().cpu() for k, v in eigenvalues.items()},
        bases=kept,
        error={k: v for k, v in err.to_dict().items() if k != "residual_samples"},
        eigenvalue_errors=errors,
        timings=timings,
        products={"sketch": res.num_products, "aposteriori": int(err.num_tests)},
    )
    return part, Eigenbases(bases, eigenvalues, exact_spectrum)


def _scores(
    op: Any, config: StudyConfig, ggn: Any
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The per-parameter scores of ``[analysis] scores`` that do not depend on a basis
    (magnitude always; ``diag_h2`` is computed per basis with the curves)."""
    a, s = config.analysis, config.sketch
    scores: dict[str, torch.Tensor] = {"magnitude": op.parameter_vector().abs()}
    products: dict[str, int] = {}
    if "gradient" in a.scores:
        scores["gradient"] = op.gradient().abs()
    if "ggn_diag" in a.scores:
        est = diagonal(ggn, a.ggn_diag_probes, method="hutchinson", seed=s.seed, block_size=32)
        scores["ggn_diag"] = est.values
        products["ggn_diag"] = est.num_products
    return scores, products


def overlap_part(
    op: Any, config: StudyConfig, eigen: EigenPart, found: Eigenbases, *, ggn: Any = None
) -> OverlapPart:
    """Overlap curves of every configured mask against every basis, and the metrics.

    Args:
        op: the study's curvature operator (θ and, for the ``gradient`` score, ∇L).
        config: the study (``[analysis]``: ks, scores, random draws, ρ).
        eigen: the eigen part (D, outer).
        found: the bases of :func:`eigen_part`.
        ggn: the GGN operator, for the ``ggn_diag`` score (when configured).

    Returns:
        The :class:`OverlapPart`.
    """
    a, s = config.analysis, config.sketch
    dim, outer = eigen.dim, eigen.outer
    theta = op.parameter_vector()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scores, products = _scores(op, config, ggn)
    timings["scores"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    curves: dict[str, dict[str, torch.Tensor]] = {}
    for kind, U in found.bases.items():
        if "diag_h2" in a.scores:
            scores[f"diag_h2_{kind}"] = diag_h2(found.eigenvalues[kind], U)
        check_basis(U, f"{kind} eigenvectors")  # once, not once per curve
        by_mask = {"magnitude": overlap_curve(theta, U, check=False)}
        mean, std = random_overlap_curve(U, n_draws=a.random_draws, seed=s.seed, check=False)
        by_mask["random_mean"], by_mask["random_std"] = mean, std
        by_mask["best"] = best_overlap_curve(U)
        for name in ("gradient", "ggn_diag"):
            if name in scores:
                by_mask[name] = score_overlap_curve(scores[name], U, check=False)
        if "diag_h2" in a.scores:
            by_mask["diag_h2"] = score_overlap_curve(scores[f"diag_h2_{kind}"], U, check=False)
        for name, curve in by_mask.items():
            curves.setdefault(name, {})[kind] = curve.detach().double().cpu()
    chance = torch.arange(1, outer + 1, dtype=torch.float64) / dim
    timings["overlap_curves"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    metrics: dict[str, dict[str, Any]] = {}
    for rho in a.rhos:
        k = max(1, round(rho * dim))
        if k > outer:
            continue
        mask = magnitude_mask(theta, k)
        entry: dict[str, Any] = {"k": k}
        for kind, U in found.bases.items():
            Uk = U.top(k) if hasattr(U, "top") else U[:, :k]
            entry[kind] = grassmann_metrics(mask, Uk)
        metrics[str(rho)] = entry
    timings["metrics"] = time.perf_counter() - t0
    return OverlapPart(
        ks=tuple(k for k in a.ks if k <= outer),
        theta_order=magnitude_order(theta, outer).cpu(),
        curves=curves,
        chance=chance,
        metrics=metrics,
        timings=timings,
        products=products,
    )


def analyse_step(
    config: StudyConfig,
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    step: int,
    split: str,
    loss_fn: Any = None,
    progress: bool = True,
) -> StepAnalysis:
    """Analyse the curvature of ``model`` on ``data`` at one training step.

    Args:
        config: the study configuration.
        model: the network at that step (not changed: the operators work on copies).
        data: the Hessian samples ``(X, y)``
            (:func:`~curvsketch.experiments.study_operator.hessian_samples`).
        step: the training step (for the record).
        split: ``"train"`` or ``"test"`` (for the record).
        loss_fn: mean-reduced loss (default: cross-entropy, the study's).
        progress: show progress of the products.

    Returns:
        A frozen :class:`~curvsketch.experiments.step_records.StepAnalysis`.
    """
    h, s = config.hessian, config.sketch
    op = study_operator(config, model, data, loss_fn=loss_fn)
    exact_op = None
    if _use_exact(config, int(op.shape[0])):
        exact_op = study_operator(config, model, data, dtype=h.exact_dtype, loss_fn=loss_fn)
    eigen, found = eigen_part(op, config, exact_op=exact_op, progress=progress)
    del exact_op
    spectrum = SpectrumPart.of(
        spectrum_estimates(
            op,
            config.analysis,
            result=found.bases["sketched"],
            seed=s.seed,
            block_size=s.block_size,
            exact_eigenvalues=found.exact_spectrum,
        )
    )
    ggn = None
    if "ggn_diag" in config.analysis.scores:
        ggn = op if op.kind == "ggn" else None
        if ggn is None:
            ggn = study_operator(
                config, model, data, kind="ggn", loss_fn=loss_fn, check_determinism=False
            )
    overlap = overlap_part(op, config, eigen, found, ggn=ggn)
    return StepAnalysis(step, split, eigen, spectrum, overlap)
