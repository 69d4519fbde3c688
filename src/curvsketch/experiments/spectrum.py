"""The work of ``curvsketch spectrum``: eigenvalues, trace and density of one checkpoint.

:func:`prepare_spectrum` checks a study configuration and the command's overrides before
anything is loaded (the estimator settings against :func:`curvsketch.trace`'s needs, the
sketch's plan on D, how many eigenvalues can be shown); :func:`compute_spectrum` then
sketches the operator with the ``[sketch]`` settings (:func:`.study_operator.study_plan`)
and estimates its trace and spectral density as the study records them
(:func:`.spectrum_estimates.spectrum_estimates`). The CLI (:mod:`curvsketch.cli.spectrum`)
only parses flags, builds the operator (through the study's factory,
:func:`.study_operator.study_operator`) and prints what comes back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from curvsketch.experiments.config import AnalysisConfig, StudyConfig
from curvsketch.experiments.preflight import check_sketch_plan, check_study
from curvsketch.experiments.spectrum_estimates import SpectrumEstimates, spectrum_estimates
from curvsketch.experiments.study_operator import sketch_eigenpairs
from curvsketch.sketch import EighResult, SketchPlan
from curvsketch.sketch.trace import TRACE_METHODS, TRACE_MIN_PRODUCTS

__all__ = [
    "DEFAULT_TOP",
    "TRACE_METHODS",
    "SpectrumJob",
    "SpectrumReport",
    "compute_spectrum",
    "prepare_spectrum",
]

#: Eigenvalues shown when no ``top`` is given (fewer if the sketch computes fewer).
DEFAULT_TOP = 10


@dataclass(frozen=True)
class SpectrumJob:
    """A checked ``spectrum`` request (from :func:`prepare_spectrum`).

    Attributes:
        config: the study configuration.
        analysis: ``config.analysis`` with the overrides applied (trace, density).
        dim: D, the model's parameters.
        plan: the sketch's plan on D (sizes as ``curvsketch run`` uses them).
        top: eigenvalues to show, at most ``plan.outer``.
    """

    config: StudyConfig
    analysis: AnalysisConfig
    dim: int
    plan: SketchPlan
    top: int


@dataclass
class SpectrumReport:
    """What :func:`compute_spectrum` found.

    Attributes:
        job: the request.
        result: the sketched eigendecomposition.
        estimates: trace and spectral density (each ``None`` when skipped).
        values: the ``job.top`` leading eigenvalues in the order of ``which``
            (Rayleigh–Ritz values where the recovery keeps them).
    """

    job: SpectrumJob
    result: EighResult
    estimates: SpectrumEstimates
    values: torch.Tensor


def _name(key: str, value: Any, flags: Mapping[str, str]) -> str:
    """``--top 9`` where the caller named the flag of ``key``, else ``top=9``."""
    return f"{flags[key]} {value}" if key in flags else f"{key}={value}"


def _overrides(
    analysis: AnalysisConfig, changes: dict[str, Any], flags: Mapping[str, str]
) -> AnalysisConfig:
    method = changes.get("trace_method")
    if method is not None:
        method = changes["trace_method"] = str(method).lower()
        if method not in TRACE_MIN_PRODUCTS:
            raise ValueError(
                f"{_name('trace_method', repr(method), flags)} is not a trace estimator; use "
                f"one of {', '.join(TRACE_METHODS)}"
            )
    a = dataclasses.replace(analysis, **{k: v for k, v in changes.items() if v is not None})
    need = TRACE_MIN_PRODUCTS[a.trace_method]
    if 0 < a.trace_products < need:
        raise ValueError(
            f"{_name('trace_products', a.trace_products, flags)}: trace method "
            f"{a.trace_method!r} needs >= {need} products (or 0 to skip the trace)"
        )
    return a


def prepare_spectrum(
    config: StudyConfig,
    *,
    top: int | None = None,
    trace_products: int | None = None,
    trace_method: str | None = None,
    density_probes: int | None = None,
    density_steps: int | None = None,
    flags: Mapping[str, str] | None = None,
) -> SpectrumJob:
    """Check a ``spectrum`` request before any data is loaded or product computed.

    Args:
        config: a validated study configuration (its model is built once to count D).
        top: eigenvalues to show (default ``min(DEFAULT_TOP, outer)``), at most the
            ``outer`` eigenpairs the sketch computes.
        trace_products, trace_method, density_probes, density_steps: overrides of the
            ``[analysis]`` keys of the same names (``None`` keeps the configuration's;
            ``0`` products, probes or steps skips that estimate).
        flags: how to name each argument in messages (e.g. ``{"top": "--top"}``).

    Returns:
        A :class:`SpectrumJob`.

    Raises:
        ValueError: a bad override or ``top`` (named as in ``flags``), or a
            :class:`~curvsketch.experiments.config.ConfigError` of the configuration.
    """
    names = dict(flags or {})
    if top is not None and top < 1:
        raise ValueError(f"{_name('top', top, names)} must be >= 1 (eigenvalues to show)")
    for key, value in (("density_probes", density_probes), ("density_steps", density_steps)):
        if value is not None and value < 0:
            raise ValueError(f"{_name(key, value, names)} must be >= 0 (0 skips the density)")
    if trace_products is not None and trace_products < 0:
        raise ValueError(
            f"{_name('trace_products', trace_products, names)} must be >= 0 (0 skips the trace)"
        )
    changes = {
        "trace_products": trace_products,
        "trace_method": trace_method,
        "density_probes": density_probes,
        "density_steps": density_steps,
    }
    analysis = _overrides(config.analysis, changes, names)
    dim = check_study(config, analysis=False)
    plan = check_sketch_plan(config, dim)
    if top is None:
        top = min(DEFAULT_TOP, plan.outer)
    elif top > plan.outer:
        s = config.sketch
        raise ValueError(
            f"{_name('top', top, names)} exceeds the {plan.outer} eigenpairs the sketch "
            f"computes (sketch.outer = {s.outer}, D = {dim}); pass {names.get('top', 'top')} "
            f"<= {plan.outer} or raise sketch.outer in the configuration"
        )
    return SpectrumJob(config, analysis, dim, plan, top)


def compute_spectrum(op: Any, job: SpectrumJob, *, progress: bool = True) -> SpectrumReport:
    """Sketch ``op`` with the study's ``[sketch]`` settings, then its trace and density.

    Args:
        op: the curvature operator of ``job.config`` (D = ``job.dim``).
        job: from :func:`prepare_spectrum`.
        progress: products done / total on stderr.

    Returns:
        A :class:`SpectrumReport`.

    Raises:
        ValueError: ``op`` has another dimension than the job was checked for.
    """
    if int(op.shape[0]) != job.dim:
        raise ValueError(
            f"op has dimension {int(op.shape[0])}, the job was prepared for D = {job.dim}; "
            "build the operator of the same configuration"
        )
    s = job.config.sketch
    res = sketch_eigenpairs(op, s, progress=progress)
    spec = spectrum_estimates(op, job.analysis, result=res, seed=s.seed, block_size=s.block_size)
    values = res.ritz_values if res.ritz_values is not None else res.eigenvalues
    return SpectrumReport(job, res, spec, values[: job.top])
