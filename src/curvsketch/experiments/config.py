"""Study configuration: typed sections, read from TOML, validated with helpful errors.

A configuration file has the sections ``[data]``, ``[model]``, ``[train]``, ``[hessian]``,
``[sketch]``, ``[analysis]`` and optionally ``[sweep]``; every key has a default, so a file
only names what differs from the paper's 16×16 MNIST setting (``docs/paper.md`` §4).
Unknown sections or keys are errors that name the closest valid key.

The sections (and :class:`ConfigError`) are defined in :mod:`.config_sections` and
re-exported here; the rules a configuration must follow are :mod:`.config_rules`
(imports point one way: ``config`` -> ``config_rules`` -> ``config_sections``).
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from curvsketch.experiments.config_rules import check_types, check_values
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
    "AnalysisConfig",
    "ConfigError",
    "DataConfig",
    "HessianConfig",
    "ModelConfig",
    "SketchConfig",
    "StudyConfig",
    "SweepConfig",
    "TrainConfig",
    "config_from_dict",
    "load_config",
]


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


def load_config(path: str | Path, *, data_root: str | Path | None = None) -> StudyConfig:
    """Read a TOML study configuration.

    Args:
        path: the ``.toml`` file.
        data_root: a folder that replaces ``data.root`` (the ``--data-root`` flag of
            ``curvsketch run``, ``spectrum``, ``measure``); ``None`` keeps the file's.

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
    if data_root:
        config = replace(config, data=replace(config.data, root=str(data_root))).validate()
    return config
