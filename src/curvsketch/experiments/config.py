"""Study configuration: typed sections, read from TOML, validated with helpful errors.

A configuration file has the sections ``[data]``, ``[model]``, ``[train]``, ``[hessian]``,
``[sketch]``, ``[analysis]`` and optionally ``[sweep]``; every key has a default, so a file
only names what differs from the paper's 16×16 MNIST setting (``docs/paper.md`` §4).
Unknown sections or keys are errors that name the closest valid key.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "AnalysisConfig",
    "ConfigError",
    "DataConfig",
    "HessianConfig",
    "ModelConfig",
    "SketchConfig",
    "StudyConfig",
    "SweepConfig",
    "TrainConfig",
    "load_config",
]


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the fix."""


@dataclass(frozen=True)
class DataConfig:
    """Which samples: a bundled set, a local folder, or synthetic data.

    Attributes:
        name: ``mnist16`` (bundled, default), ``digits`` (bundled scikit-learn 8×8),
            ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``, ``imagenet`` (read from
            ``root``), or ``synthetic``.
        root: folder holding a torchvision-style data set (for the folder names).
        n_train_per_class: training samples per class (bundled sets).
        n_test_per_class: test samples per class (bundled sets).
        hessian_per_class: class-balanced Hessian samples per class (50 → 500 for 10 classes).
        seed: seed of the splits and of the Hessian subsets.
        input_shape: for ``synthetic``: the shape of one input.
        num_classes: for ``synthetic``.
        num_samples: for ``synthetic``: training samples (test: a quarter of it).
    """

    name: str = "mnist16"
    root: str | None = None
    n_train_per_class: int = 400
    n_test_per_class: int = 100
    hessian_per_class: int = 50
    seed: int = 0
    input_shape: tuple[int, ...] = (256,)
    num_classes: int = 10
    num_samples: int = 2000


@dataclass(frozen=True)
class ModelConfig:
    """Which network: a name from ``curvsketch.experiments.models.MODELS`` and its arguments."""

    name: str = "paper_mlp"
    kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Plain SGD with a constant learning rate (the paper's MNIST setting by default)."""

    steps: int = 1000
    lr: float = 0.3
    batch_size: int = 500
    seed: int = 0


@dataclass(frozen=True)
class HessianConfig:
    """Which curvature, at which steps, on which samples, and how it is computed.

    Attributes:
        steps: training steps at which to analyse the curvature.
        splits: ``train`` and/or ``test`` (the Hessian sample sets H_tr, H_te).
        kind: ``hessian`` (the paper) or ``ggn``.
        exact: ``auto`` (exact eigendecomposition when D ≤ ``max_exact_dim``), ``true``
            or ``false``.
        max_exact_dim: the size limit of ``auto``.
        dtype: ``float64`` or ``float32``, for the products and the linear algebra.
        exact_dtype: dtype of the exact reference (dense Hessian and its eigendecomposition;
            ``float32`` halves its time at D = 7,030, eigenvalue errors stay ~1e-6 ‖H‖).
        engine: block-product engine (``auto`` measures them).
        micro_batch_size: samples per micro-batch (empty: all at once).
    """

    steps: tuple[int, ...] = (0, 100, 250, 500, 1000)
    splits: tuple[str, ...] = ("train", "test")
    kind: str = "hessian"
    exact: str = "auto"
    max_exact_dim: int = 12_000
    dtype: str = "float64"
    exact_dtype: str = "float32"
    engine: str = "auto"
    micro_batch_size: int | None = None


@dataclass(frozen=True)
class SketchConfig:
    """Sketched eigendecomposition settings (``curvsketch.seigh``) and its error estimate."""

    outer: int = 355
    inner: int | None = 710
    recovery: str = "singlepass"
    noise: str = "ssrft"
    seed: int = 0
    block_size: int | None = None
    power_iters: int = 0
    error_tests: int = 30


@dataclass(frozen=True)
class AnalysisConfig:
    """What to measure from eigenpairs and parameters.

    Attributes:
        ks: mask sizes k reported in ``results.json`` and the summary.
        main_k: the k of the headline numbers and the overlap-vs-step figure.
        rhos: ρ = k/D at which the seven Grassmann metrics are computed.
        random_draws: random masks per curve (mean ± std).
        scores: per-parameter scores whose masks are compared: ``magnitude``,
            ``gradient``, ``ggn_diag``, ``diag_h2``.
        ggn_diag_probes: Hutchinson probes (Rademacher) for the GGN diagonal.
        stability_ks: k values of the stabilisation heatmaps.
        trace_products: operator products for the trace estimate of each analysed step
            (:func:`curvsketch.trace`, with a standard error); ``0`` skips it.
        trace_method: ``xtrace`` (default), ``hutch++`` or ``hutchinson``.
        density_probes: random probes of the spectral density (stochastic Lanczos
            quadrature, :func:`curvsketch.spectral_density`); ``0`` skips it.
        density_steps: Lanczos steps per probe of the density (its quadrature nodes);
            ``0`` skips it.

    Trace and density are deflated by the sketched eigenpairs when the recovery keeps
    Rayleigh–Ritz values (``hmt``, ``krylov``); a ``singlepass`` result is not used.
    """

    ks: tuple[int, ...] = (10, 50, 100, 200, 350)
    main_k: int = 350
    rhos: tuple[float, ...] = (0.005, 0.01, 0.05)
    random_draws: int = 10
    scores: tuple[str, ...] = ("magnitude", "gradient", "ggn_diag", "diag_h2")
    ggn_diag_probes: int = 100
    stability_ks: tuple[int, ...] = (35, 70, 350)
    trace_products: int = 60
    trace_method: str = "xtrace"
    density_probes: int = 8
    density_steps: int = 40


@dataclass(frozen=True)
class SweepConfig:
    """Size sweep: the same study for several MLP widths (the size effect)."""

    widths: tuple[int, ...] = ()
    rho: float = 0.05


@dataclass(frozen=True)
class StudyConfig:
    """A whole study: data, model, training, curvature, sketch, analysis (and sweep)."""

    name: str = "mnist16-paper-mlp"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    hessian: HessianConfig = field(default_factory=HessianConfig)
    sketch: SketchConfig = field(default_factory=SketchConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of every setting."""
        return asdict(self)

    def validate(self) -> StudyConfig:
        """Check every value before any work starts; return ``self``.

        Checks the type of every key (``steps = "40"``, ``lr = "fast"``, ``steps = 1.5`` and
        booleans for numbers are refused), its range, and the combinations that would
        otherwise fail (or be silently skipped) after training: ``analysis.main_k`` among
        ``analysis.ks``, every k within ``sketch.outer``, the model's arguments against its
        builder. Checks that need the model or the data (input width, classes, ρ·D) are in
        :func:`curvsketch.experiments.preflight.check_study`.

        Raises:
            ConfigError: the first problem, naming the key and the fix.
        """
        from curvsketch.experiments.config_rules import check_types, check_values

        check_types(self)
        check_values(self)
        return self


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown key {where}{key!r}{hint} Valid keys of [{where.rstrip('.') or 'top'}]: "
                f"{', '.join(known)}"
            )
        default = getattr(cls(), key)
        if isinstance(default, tuple) and isinstance(value, list):
            if default and all(isinstance(x, float) for x in default):
                value = [float(x) if type(x) is int else x for x in value]
            value = tuple(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(value, bool) and key == "exact":
            value = "true" if value else "false"
        kwargs[key] = value
    return cls(**kwargs)


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "hessian": HessianConfig,
    "sketch": SketchConfig,
    "analysis": AnalysisConfig,
    "sweep": SweepConfig,
}


def config_from_dict(raw: dict[str, Any]) -> StudyConfig:
    """Build and validate a :class:`StudyConfig` from nested dicts (parsed TOML).

    Raises:
        ConfigError: an unknown section or key (with the closest valid name) or a bad value.
    """
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "name":
            kwargs["name"] = value
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table of keys, got {type(value).__name__}")
            kwargs[key] = _build(SECTIONS[key], value, f"{key}.")
        else:
            close = difflib.get_close_matches(key, [*SECTIONS, "name"], n=1)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            valid = ", ".join(f"[{s}]" for s in SECTIONS)
            raise ConfigError(f"unknown section [{key}]{hint} Valid: name, {valid}")
    return StudyConfig(**kwargs).validate()


def load_config(path: str | Path) -> StudyConfig:
    """Read a TOML study configuration.

    Args:
        path: the ``.toml`` file.

    Returns:
        The validated :class:`StudyConfig`.

    Raises:
        FileNotFoundError: no such file (the message lists the bundled ``configs/``).
        ConfigError: invalid TOML, keys or values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"config file {path} not found; the paper's settings are in configs/ "
            "(e.g. configs/mnist16.toml)"
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start}); a "
            "configuration is a TOML text file, e.g. configs/mnist16.toml"
        ) from None
    config = config_from_dict(raw)
    if "name" not in raw:
        config = replace(config, name=path.stem)
    return config
