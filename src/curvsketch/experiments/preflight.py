"""Checks a study runs before it trains: model against data, sizes against the model.

:meth:`StudyConfig.validate` checks what the configuration alone decides. What needs the
model or the data is checked here, in a second or less, so that nothing fails (or is
silently skipped) after minutes of training: the model must accept one input of the data
and give one logit per class; every k of the analysis, and k = round(ρ·D) of every ρ,
must be within the eigenpairs the sketch computes; the Hessian subset must fit in every
class; a training batch must fit in the training set. Command-line values (an output
file, a memory budget, worker indices) are checked here too, before any work.
Every failure is a :class:`~curvsketch.experiments.config.ConfigError` (a ``ValueError``)
naming the key or flag and the fix. What the data will look like, known from ``[data]``
without loading it, is :func:`~curvsketch.experiments.data_facts.data_facts` (importable
from here too).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from curvsketch.experiments.config import ConfigError, StudyConfig
from curvsketch.experiments.config_rules import toml
from curvsketch.experiments.data_facts import DataFacts, data_facts
from curvsketch.experiments.models import build_model, count_parameters
from curvsketch.sketch import SketchPlan, make_plan

__all__ = [
    "DataFacts",
    "check_memory_budget",
    "check_output_file",
    "check_sketch_plan",
    "check_study",
    "check_workers",
    "data_facts",
]


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _input_hint(config: StudyConfig, shape: tuple[int, ...]) -> str:
    width = math.prod(shape)
    name = config.model.name.lower().replace("-", "_")
    if name == "mlp":
        return f"set the first entry of model.kwargs.sizes to {width}"
    if name == "scaled_mlp":
        return f"set model.kwargs.input_dim = {width}"
    if name == "paper_mlp":
        return (
            f"paper_mlp takes 256 = 16×16 inputs (data.name = 'mnist16'); for {width} use "
            f"model.name = 'scaled_mlp' with kwargs = {{ width = 20, input_dim = {width} }}"
        )
    return "use a model for these inputs (the CNNs take (3, H, W) images) or other data"


def _classes_hint(config: StudyConfig, classes: int) -> str:
    name = config.model.name.lower().replace("-", "_")
    if name == "mlp":
        return f"set the last entry of model.kwargs.sizes to {classes}"
    if name == "paper_mlp":
        return f"use model.name = 'scaled_mlp' with kwargs = {{ num_classes = {classes} }}"
    return f"set model.kwargs.num_classes = {classes}"


def _check_model_on_data(
    config: StudyConfig, model: nn.Module, facts: DataFacts, inputs: Tensor | None
) -> None:
    """One forward pass of one sample: the model takes the inputs, one logit per class."""
    if inputs is not None:
        x = inputs[:1]
    elif facts.input_shape is not None:
        first = next(iter(model.parameters()), None)
        dtype = first.dtype if first is not None else torch.float32
        device = first.device if first is not None else "cpu"
        x = torch.zeros(1, *facts.input_shape, dtype=dtype, device=device)
    else:
        return
    shape = tuple(x.shape[1:])
    what = f"model.name = {toml(config.model.name)}"
    if config.model.kwargs:
        what += f" (model.kwargs = {toml(config.model.kwargs)})"
    data = f"data.name = {toml(config.data.name)}"
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        raise ConfigError(
            f"{what} cannot take the inputs of {data} (one sample of shape {shape}): "
            f"{_first_line(err)}; {_input_hint(config, shape)}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != 1:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(
            f"{what} returns {got} for one sample of {data}; the study needs logits of shape "
            "(samples, classes)"
        )
    classes = facts.num_classes
    if classes is not None and out.shape[1] != classes:
        raise ConfigError(
            f"{what} gives {out.shape[1]} outputs per sample but {data} has {classes} "
            f"classes; {_classes_hint(config, classes)}"
        )


def _check_counts(config: StudyConfig, facts: DataFacts, training: bool = True) -> None:
    d = config.data
    for split in config.hessian.splits:
        available, source = facts.per_class[split]
        if available is not None and d.hessian_per_class > available:
            raise ConfigError(
                f"data.hessian_per_class = {d.hessian_per_class} exceeds the {available} "
                f"{split} samples per class of data.name = {toml(d.name)} ({source}); lower "
                f"data.hessian_per_class to at most {available}"
            )
    size, batch = facts.train_size, config.train.batch_size
    if training and size is not None and batch > size:
        raise ConfigError(
            f"train.batch_size = {batch} exceeds the {size} training samples of data.name = "
            f"{toml(d.name)}; lower train.batch_size to at most {size}"
        )


def _check_sizes(config: StudyConfig, D: int) -> None:
    """Every k of the analysis within the eigenpairs the sketch computes (min(outer, D))."""
    a, s = config.analysis, config.sketch
    outer = min(s.outer, D)
    limit = f"min(sketch.outer = {s.outer}, D = {D:,} parameters) = {outer}"
    for key, ks in (("analysis.ks", a.ks), ("analysis.stability_ks", a.stability_ks)):
        bad = [k for k in ks if k > outer]
        if bad:
            raise ConfigError(
                f"{key} = {toml(ks)}: {toml(bad)} exceed the {limit} eigenpairs computed; "
                f"drop them or raise sketch.outer (and sketch.inner) to {max(bad)}"
            )
    for rho in a.rhos:
        k = max(1, round(rho * D))
        if k > outer:
            raise ConfigError(
                f"analysis.rhos: ρ = {rho} needs k = round(ρ·D) = {k} eigenpairs (D = {D:,}), "
                f"more than the {limit} computed; raise sketch.outer to {k} (and sketch.inner) "
                f"or use ρ <= {outer / D:.3g}"
            )
    h = config.hessian
    if s.which != "LM" and (h.exact == "true" or (h.exact == "auto" and h.max_exact_dim >= D)):
        why = "'true'" if h.exact == "true" else f"'auto' (D = {D:,} <= hessian.max_exact_dim)"
        raise ConfigError(
            f"sketch.which = {toml(s.which)} with hessian.exact = {why}: the study's exact "
            "reference is the top-|λ| eigenpairs, which the sketched ones would be compared "
            "with; set hessian.exact = 'false' (or sketch.which = 'LM')"
        )
    if h.exact == "true" or (h.exact == "auto" and h.max_exact_dim >= D):
        need = D * D * (8 if h.exact_dtype == "float64" else 4)
        have = _physical_memory()
        if have is not None and need > have:
            key = (
                "hessian.exact = 'true'"
                if h.exact == "true"
                else (f"hessian.exact = 'auto' with hessian.max_exact_dim = {h.max_exact_dim}")
            )
            raise ConfigError(
                f"{key} builds the dense D × D = {D:,}² Hessian ({need / 1e9:,.1f} GB in "
                f"{h.exact_dtype}), more than this machine's {have / 1e9:,.1f} GB of memory; "
                f"set hessian.exact = 'false' (sketch only) or lower hessian.max_exact_dim"
            )


#: ``make_plan`` names its arguments ``inner=40``; a study's keys are ``sketch.inner = 40``.
_PLAN_ARGUMENT = re.compile(r"\b(outer|inner|block_size|power_iters|which|recovery|noise|seed)=")


def check_sketch_plan(config: StudyConfig, D: int) -> SketchPlan:
    """The sketch plan of ``config.sketch`` on ``D`` parameters (the study's, the CLI's).

    :func:`curvsketch.sketch.make_plan` with ``cap_to_dim=True`` (what
    :func:`~curvsketch.experiments.measure_step.study_plan` builds on the operator): every
    size rule lives there, none is written again here.

    Raises:
        ConfigError: make_plan's message with the ``[sketch]`` keys named as in the file.
    """
    s = config.sketch
    try:
        plan = make_plan(
            D,
            s.outer,
            s.inner,
            recovery=s.recovery,
            noise=s.noise,
            seed=s.seed,
            block_size=s.block_size,
            power_iters=s.power_iters,
            which=s.which,
            cap_to_dim=True,
        )
    except ValueError as err:
        text = _PLAN_ARGUMENT.sub(r"sketch.\1 = ", str(err)).replace("D=", "D = ")
        raise ConfigError(f"[sketch] on D = {D:,} parameters: {text}") from None
    return plan


def _physical_memory() -> int | None:
    """Bytes of RAM of this machine (``None`` where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_study(
    config: StudyConfig,
    model: nn.Module | None = None,
    *,
    inputs: Tensor | None = None,
    analysis: bool = True,
) -> int:
    """Check that ``config`` can run to the end, before training; return D.

    Builds the model (unless given), runs one sample through it (from ``inputs``, or
    zeros of the shape ``config.data`` gives), and checks the class count, the
    per-class and batch sizes, the sketch's sizes on D (:func:`check_sketch_plan`), and
    (with ``analysis``) every k and ρ against min(``sketch.outer``, D).

    Args:
        config: a validated study configuration.
        model: the study's model, if already built (left in its training mode).
        inputs: some inputs of the real data (the first one is used), if loaded.
        analysis: also check the ``[analysis]`` sizes and the training batch size
            (``curvsketch run``); ``False`` for commands that only measure
            (``curvsketch measure``).

    Returns:
        D, the number of trainable parameters.

    Raises:
        ConfigError: the first problem, naming the key and the fix.
    """
    facts = data_facts(config.data)
    _check_counts(config, facts, training=analysis)
    if model is None:
        m = config.model
        try:
            model = build_model(m.name, seed=m.seed, **m.kwargs)
        except ValueError as err:
            raise ConfigError(f"model.kwargs: {err}") from None
    _check_model_on_data(config, model, facts, inputs)
    D = count_parameters(model)
    check_sketch_plan(config, D)
    if analysis:
        _check_sizes(config, D)
    return D


def check_output_file(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Check that a result file can be written at ``path`` before the work that makes it.

    Raises:
        ValueError: ``path`` is a folder, its folder is missing, not a folder, or not
            writable (each named, with the fix).
    """
    p = Path(path).expanduser()
    parent = p.parent
    if p.is_dir():
        raise ValueError(f"{flag} {p} is a folder; give a file name, e.g. {flag} {p / 'eig.pt'}")
    if not parent.exists():
        raise ValueError(f"{flag} {p}: the folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise ValueError(f"{flag} {p}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{flag} {p}: the folder {parent} is not writable; choose another path")
    return p


def check_memory_budget(budget: Any, flag: str = "--memory-budget") -> int | None:
    """``None``, or a positive whole number of bytes.

    Raises:
        ValueError: zero, negative or not an integer.
    """
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(
            f"{flag} {budget} must be a positive number of bytes, e.g. {flag} 8000000000 for 8 GB"
        )
    return budget


def check_workers(worker: Any, of: Any) -> None:
    """``0 <= worker < of`` (``curvsketch measure --worker i --of n``).

    Raises:
        ValueError: ``--of`` below 1 or ``--worker`` outside ``[0, --of)``.
    """
    if isinstance(of, bool) or not isinstance(of, int) or of < 1:
        raise ValueError(f"--of {of} must be >= 1 (the number of measure processes)")
    if isinstance(worker, bool) or not isinstance(worker, int) or not 0 <= worker < of:
        raise ValueError(
            f"--worker {worker} must be in [0, --of = {of}): workers are numbered 0 to {of - 1}"
        )
