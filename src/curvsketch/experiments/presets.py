"""Built-in study configurations: the demo (paper's 16×16 MNIST setting) and its quick form.

They ship inside the package so that ``curvsketch demo`` works from an installed wheel;
``configs/*.toml`` in the repository hold the same and the larger settings as files.
"""

from __future__ import annotations

from typing import Any

from curvsketch.experiments.config import StudyConfig, config_from_dict

__all__ = ["PRESETS", "preset"]

PRESETS: dict[str, dict[str, Any]] = {
    # docs/paper.md §4, 16×16 MNIST: MLP 256-20-20-20-20-20-10 (7,030 parameters), SGD
    # lr 0.3 / batch 500, 500 class-balanced Hessian samples per split, o = 355, s = 710.
    "demo": {
        "name": "demo-mnist16",
        "train": {"steps": 1000, "lr": 0.3, "batch_size": 500},
        "hessian": {"steps": [0, 100, 250, 500, 1000], "splits": ["train", "test"]},
        "sketch": {"outer": 355, "inner": 710},
        "analysis": {"ks": [10, 50, 100, 200, 350], "main_k": 350},
    },
    # The same net and sketch, fewer steps and no exact reference: under two minutes.
    "quick": {
        "name": "demo-mnist16-quick",
        "train": {"steps": 300, "lr": 0.3, "batch_size": 500},
        "hessian": {"steps": [0, 100, 300], "splits": ["train", "test"], "exact": "false"},
        "sketch": {"outer": 355, "inner": 710, "error_tests": 20},
        "analysis": {"ks": [10, 50, 100, 200, 350], "main_k": 350, "random_draws": 5},
    },
}


def preset(name: str) -> StudyConfig:
    """The built-in configuration ``name`` (``"demo"`` or ``"quick"``)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return config_from_dict(PRESETS[name])
