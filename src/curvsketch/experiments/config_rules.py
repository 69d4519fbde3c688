"""The rules a study configuration must follow, checked when it is loaded.

:meth:`curvsketch.experiments.config.StudyConfig.validate` calls :func:`check_types`
(every key has the type of its field: no ``steps = "40"``, ``steps = 1.5`` or ``true``
for a number) and :func:`check_values` (ranges, names, and the combinations that would
otherwise fail or be skipped after minutes of training). Each :class:`ConfigError`
names the key as it is written in the TOML file and the fix. Checks that need the
model or the data are in :mod:`curvsketch.experiments.preflight`.

This module sees the sections (:mod:`.config_sections`) only, never :mod:`.config` (which
imports it): a whole configuration is anything shaped like :class:`Study`.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import types
import typing
from dataclasses import fields
from typing import Any, Protocol

from curvsketch.experiments.config_sections import (
    AnalysisConfig,
    ConfigError,
    DataConfig,
    HessianConfig,
    ModelConfig,
    SketchConfig,
    SweepConfig,
    TrainConfig,
)

__all__ = [
    "DATA_NAMES",
    "SCORES",
    "Study",
    "check_types",
    "check_values",
    "normalise_data_name",
    "toml",
]

#: Data sets that need no files (``mnist16``, ``digits`` are bundled), then the folder ones.
BUNDLED_DATA = ("mnist16", "digits", "synthetic")
FOLDER_DATA = ("mnist", "fashion-mnist", "cifar10", "cifar100", "imagenet")
DATA_NAMES = (*BUNDLED_DATA, *FOLDER_DATA)
#: Per-parameter scores whose masks a study can compare.
SCORES = ("magnitude", "gradient", "ggn_diag", "diag_h2")
#: Examples for keys whose default is "unset" (``None``), used in messages.
_EXAMPLES = {
    "data.root": "~/data",
    "sketch.inner": 710,
    "sketch.block_size": 64,
    "hessian.micro_batch_size": 100,
    "model.kwargs": {"width": 40},
    "sweep.widths": [20, 40, 80],
}
_MODEL_EXAMPLES = {"mlp": {"sizes": [256, 20, 10]}, "scaled_mlp": {"width": 40}}
_SECTIONS = ("data", "model", "train", "hessian", "sketch", "analysis", "sweep")


class Study(Protocol):
    """What the rules read of a configuration (:class:`~.config.StudyConfig` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def data(self) -> DataConfig: ...
    @property
    def model(self) -> ModelConfig: ...
    @property
    def train(self) -> TrainConfig: ...
    @property
    def hessian(self) -> HessianConfig: ...
    @property
    def sketch(self) -> SketchConfig: ...
    @property
    def analysis(self) -> AnalysisConfig: ...
    @property
    def sweep(self) -> SweepConfig: ...


def toml(value: Any) -> str:
    """``value`` as it would be written in a TOML file (for messages)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a TOML literal string when it can be one
        return f"'{value}'" if "'" not in value and "\n" not in value else json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(hint: Any) -> tuple[str, Any]:
    """(what the type is called in a message, a checker) for a field's type hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is int:
        return "an integer", _is_int
    if hint is float:
        return "a number", _is_number
    if hint is str:
        return "a string (in quotes)", lambda v: isinstance(v, str)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        what, check = _describe(inner)
        return what, lambda v: v is None or check(v)
    if origin is tuple:
        what, check = _describe(args[0])
        plural = what.replace("an integer", "integers").replace("a number", "numbers")
        plural = plural.replace("a string (in quotes)", "strings (in quotes)")
        return f"a list of {plural}", check
    if origin is dict:
        return "a table of keys", lambda v: isinstance(v, dict)
    return "", lambda v: True  # typing.Any


def _type_error(key: str, value: Any, what: str, example: Any) -> ConfigError:
    name = key.rsplit(".", 1)[-1].split("[")[0]
    got = f"{key} = {toml(value)}"
    if isinstance(value, bool) and "string" not in what:
        got += " (a boolean)"
    elif isinstance(value, str) and "string" not in what:
        got += " (a string: drop the quotes)"
    return ConfigError(f"{got} must be {what}; e.g. {name} = {toml(example)}")


def check_types(config: Study) -> None:
    """Every key of every section has the type of its field (booleans are not numbers).

    Raises:
        ConfigError: ``<section>.<key> = <value> must be <type>; e.g. <key> = <example>``.
    """
    if not isinstance(config.name, str):
        raise ConfigError(f"name = {toml(config.name)} must be a string, e.g. name = 'mnist16'")
    for section in _SECTIONS:
        part = getattr(config, section)
        hints = typing.get_type_hints(type(part))
        defaults = type(part)()
        for f in fields(part):
            key, value = f"{section}.{f.name}", getattr(part, f.name)
            if key == "data.root" and isinstance(value, os.PathLike):
                continue
            what, check = _describe(hints[f.name])
            example = _EXAMPLES.get(key, getattr(defaults, f.name))
            if typing.get_origin(hints[f.name]) is tuple:
                if not isinstance(value, list | tuple):
                    raise _type_error(key, value, what, example)
                for i, item in enumerate(value):
                    if not check(item):
                        one, _ = _describe(typing.get_args(hints[f.name])[0])
                        raise _type_error(f"{key}[{i}]", item, one, example)
            elif not check(value):
                raise _type_error(key, value, what, example)


def _at_least(key: str, value: int | None, minimum: int, meaning: str) -> None:
    if value is not None and value < minimum:
        raise ConfigError(f"{key} = {value} must be >= {minimum} ({meaning})")


def _one_of(key: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), list(allowed), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"{key} = {value!r} is not valid; {hint}use one of {', '.join(allowed)}")


def normalise_data_name(name: str) -> str | None:
    """The name in ``DATA_NAMES`` that ``name`` means (folder names ignore case, ``-``, ``_``)."""
    if name in BUNDLED_DATA:
        return name
    key = name.lower().replace("-", "").replace("_", "")
    return next((n for n in FOLDER_DATA if n.replace("-", "") == key), None)


def _check_data(config: Study) -> None:
    d = config.data
    if normalise_data_name(d.name) is None:
        close = difflib.get_close_matches(d.name.lower(), DATA_NAMES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"data.name = {toml(d.name)} is not a known data set; {hint}use one of "
            f"{', '.join(BUNDLED_DATA)} (no files needed) or {', '.join(FOLDER_DATA)} (read "
            "from the folder data.root / --data-root)"
        )
    _at_least("data.n_train_per_class", d.n_train_per_class, 1, "training samples per class")
    _at_least("data.n_test_per_class", d.n_test_per_class, 1, "test samples per class")
    _at_least("data.hessian_per_class", d.hessian_per_class, 1, "Hessian samples per class")
    _at_least("data.num_classes", d.num_classes, 2, "classes of the synthetic data")
    _at_least("data.num_samples", d.num_samples, d.num_classes, "at least one per class")
    if not d.input_shape or any(n < 1 for n in d.input_shape):
        raise ConfigError(
            f"data.input_shape = {toml(d.input_shape)} must be a non-empty list of positive "
            "sizes, e.g. input_shape = [256] or [3, 32, 32]"
        )


def _check_model(config: Study) -> None:
    from curvsketch.experiments.models import MODELS, model_arguments

    m, sweep = config.model, config.sweep.widths
    key = m.name.lower().replace("-", "_")
    if key not in MODELS:
        close = difflib.get_close_matches(key, list(MODELS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown model name {m.name!r} (model.name){hint} known names: {', '.join(MODELS)}"
        )
    if sweep and key not in ("paper_mlp", "scaled_mlp"):
        raise ConfigError(
            f"sweep.widths varies the hidden width of scaled_mlp, but model.name = "
            f"{toml(m.name)}; set model.name = 'scaled_mlp' or remove [sweep]"
        )
    builder = "scaled_mlp" if sweep else key
    valid = [a for a in model_arguments(builder) if a != "seed"]
    for arg in m.kwargs:
        if arg == "seed":
            raise ConfigError(
                f"model.kwargs.seed: the initialisation seed is model.seed; write seed = "
                f"{toml(m.kwargs['seed'])} under [model], not in kwargs"
            )
        if arg not in valid:
            close = difflib.get_close_matches(arg, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            takes = f"its arguments: {', '.join(valid)}" if valid else "it takes no arguments"
            extra = (
                "; use model.name = 'scaled_mlp' for other widths and depths"
                if key == "paper_mlp"
                else ""
            )
            raise ConfigError(
                f"model.kwargs.{arg} is not an argument of {builder}; {hint}{takes}{extra}"
            )
    given = {*m.kwargs, "width"} if sweep else set(m.kwargs)
    missing = [a for a in model_arguments(builder, required=True) if a not in given]
    if missing:
        raise ConfigError(
            f"model.name = {toml(m.name)} needs model.kwargs.{missing[0]}; e.g. kwargs = "
            f"{toml(_MODEL_EXAMPLES.get(builder, {missing[0]: 1}))}"
        )


def _check_training_and_curvature(config: Study) -> None:
    from curvsketch.operators.engines import ENGINES

    t, h = config.train, config.hessian
    _at_least("train.steps", t.steps, 0, "SGD steps")
    if not (math.isfinite(t.lr) and t.lr > 0):
        raise ConfigError(f"train.lr = {toml(t.lr)} must be a finite number > 0, e.g. lr = 0.3")
    _at_least("train.batch_size", t.batch_size, 1, "samples per SGD step")
    if not h.steps:
        raise ConfigError("hessian.steps is empty; e.g. steps = [0, 100, 1000]")
    bad = [x for x in h.steps if not 0 <= x <= t.steps]
    if bad:
        raise ConfigError(
            f"hessian.steps = {toml(h.steps)} must lie within [0, train.steps = {t.steps}]; "
            f"drop {toml(bad)} or raise train.steps"
        )
    if not h.splits:
        raise ConfigError("hessian.splits is empty; e.g. splits = ['train', 'test']")
    for i, split in enumerate(h.splits):
        _one_of(f"hessian.splits[{i}]", split, ("train", "test"))
    if len(set(h.splits)) < len(h.splits):
        raise ConfigError(f"hessian.splits = {toml(h.splits)} names a split twice")
    _one_of("hessian.kind", h.kind, ("hessian", "ggn"))
    _one_of("hessian.exact", h.exact, ("auto", "true", "false"))
    _one_of("hessian.dtype", h.dtype, ("float64", "float32"))
    _one_of("hessian.exact_dtype", h.exact_dtype, ("float64", "float32"))
    engines = ["auto", *ENGINES[h.kind]]
    if h.engine not in engines:
        raise ConfigError(
            f"hessian.engine = {h.engine!r} is not an engine of kind = {h.kind!r}; use one of "
            f"{', '.join(engines)}"
        )
    _at_least("hessian.max_exact_dim", h.max_exact_dim, 0, "largest D of the exact reference")
    _at_least("hessian.micro_batch_size", h.micro_batch_size, 1, "samples per micro-batch")


def _check_sketch(config: Study) -> None:
    from curvsketch.sketch.noise import NOISE_KINDS
    from curvsketch.sketch.plan import RECOVERIES, WHICH, WHICH_RECOVERIES

    s = config.sketch
    _one_of("sketch.recovery", s.recovery, RECOVERIES)
    _one_of("sketch.noise", s.noise, NOISE_KINDS)
    _at_least("sketch.outer", s.outer, 1, "eigenpairs to sketch")
    if s.inner is not None and s.inner < s.outer:
        raise ConfigError(
            f"sketch.inner = {s.inner} < sketch.outer = {s.outer}: need inner >= outer; the "
            f"paper uses inner = 2 * outer = {2 * s.outer}"
        )
    _at_least("sketch.block_size", s.block_size, 1, "test vectors per product; e.g. 64")
    _at_least("sketch.power_iters", s.power_iters, 0, "subspace iterations")
    if s.power_iters and s.recovery != "hmt":
        raise ConfigError(
            f"sketch.power_iters = {s.power_iters} needs sketch.recovery = 'hmt'; set "
            "power_iters = 0 or recovery = 'hmt'"
        )
    if s.which not in WHICH:
        upper = str(s.which).upper()
        hint = f"did you mean {upper!r}? " if upper in WHICH else ""
        raise ConfigError(
            f"sketch.which = {toml(s.which)} is not valid; {hint}use 'LM' (largest |λ|, the "
            "default), 'LA' (largest algebraic) or 'SA' (smallest algebraic: the most "
            "negative curvature)"
        )
    if s.which != "LM" and s.recovery not in WHICH_RECOVERIES:
        raise ConfigError(
            f"sketch.which = {toml(s.which)} needs sketch.recovery = 'krylov' or 'hmt' (they "
            f"select Rayleigh–Ritz pairs); sketch.recovery = {toml(s.recovery)} finds the "
            "largest |λ| only: set which = 'LM' or recovery = 'krylov'"
        )
    _at_least("sketch.error_tests", s.error_tests, 1, "test vectors of the error estimate")


def _check_analysis(config: Study) -> None:
    a = config.analysis
    for i, score in enumerate(a.scores):
        _one_of(f"analysis.scores[{i}]", score, SCORES)
    _at_least("analysis.random_draws", a.random_draws, 1, "random masks per curve")
    _at_least("analysis.ggn_diag_probes", a.ggn_diag_probes, 1, "Hutchinson probes")
    _check_estimators(a)
    bad_rhos = [r for r in a.rhos if not 0 < r < 1]
    if bad_rhos:
        raise ConfigError(
            f"analysis.rhos = {toml(a.rhos)}: every ρ = k/D must lie in (0, 1); drop "
            f"{toml(bad_rhos)}"
        )
    if config.sweep.widths:
        return  # the sweep sets ks, main_k, rhos, stability_ks and the sketch size per width
    if not a.ks:
        raise ConfigError("analysis.ks is empty; e.g. ks = [10, 50, 100]")
    for key, ks in (("analysis.ks", a.ks), ("analysis.stability_ks", a.stability_ks)):
        bad = [k for k in ks if k < 1]
        if bad:
            raise ConfigError(f"{key} = {toml(ks)}: every k must be >= 1; drop {toml(bad)}")
    if a.main_k not in a.ks:
        raise ConfigError(
            f"analysis.main_k = {a.main_k} must be one of analysis.ks = {toml(a.ks)} (the "
            "headline numbers are read at those k); add it to ks or pick one of them"
        )


def _check_estimators(a: Any) -> None:
    """``[analysis]`` keys of the trace and spectral-density estimates (``0`` skips one)."""
    from curvsketch.sketch.trace import TRACE_METHODS, TRACE_MIN_PRODUCTS

    _one_of("analysis.trace_method", a.trace_method, TRACE_METHODS)
    need = TRACE_MIN_PRODUCTS[a.trace_method]
    if a.trace_products < 0 or 0 < a.trace_products < need:
        raise ConfigError(
            f"analysis.trace_products = {a.trace_products} must be 0 (no trace estimate) or "
            f">= {need} (operator products; trace_method = {toml(a.trace_method)} needs "
            f"{need}), e.g. trace_products = 60"
        )
    _at_least("analysis.density_probes", a.density_probes, 0, "0 skips the spectral density")
    _at_least("analysis.density_steps", a.density_steps, 0, "0 skips the spectral density")


def _check_sweep(config: Study) -> None:
    w = config.sweep
    bad = [x for x in w.widths if x < 1]
    if bad or len(set(w.widths)) < len(w.widths):
        raise ConfigError(
            f"sweep.widths = {toml(w.widths)} must be distinct positive widths, e.g. "
            "widths = [20, 40, 80]"
        )
    if not 0 < w.rho < 1:
        raise ConfigError(f"sweep.rho = {toml(w.rho)} must lie in (0, 1), e.g. rho = 0.005")


def check_values(config: Study) -> None:
    """Ranges, names and combinations of a configuration whose types are right.

    Raises:
        ConfigError: the first problem, naming the key and the fix.
    """
    _check_data(config)
    _check_model(config)
    _check_training_and_curvature(config)
    _check_sketch(config)
    _check_analysis(config)
    _check_sweep(config)
