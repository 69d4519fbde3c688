"""Size sweep: the same study over widths of the paper's MLP family (the size effect).

``docs/paper.md`` §4: overlap ÷ chance grows with network size (≈2× for the 7k MNIST MLP,
10-18× for CIFAR-10 nets). At a fixed ρ = k/D this module runs one study per width of
:func:`~curvsketch.experiments.models.scaled_mlp` (sketch size o = k) and plots magnitude
overlap ÷ chance against D at the first and last analysed steps.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from curvsketch.experiments.config import ConfigError, StudyConfig
from curvsketch.experiments.models import build_model, count_parameters
from curvsketch.experiments.pipeline import run_study
from curvsketch.experiments.preflight import check_study

__all__ = ["run_sweep"]


def _width_config(config: StudyConfig, width: int) -> StudyConfig:
    kwargs = {**config.model.kwargs, "width": width}
    try:
        D = count_parameters(build_model("scaled_mlp", **kwargs))
    except ValueError as err:
        raise ConfigError(
            f"sweep.widths = {list(config.sweep.widths)}, width {width}: {err}"
        ) from None
    k = max(1, round(config.sweep.rho * D))
    cfg = dataclasses.replace(
        config,
        name=f"{config.name}-width{width}",
        model=dataclasses.replace(config.model, name="scaled_mlp", kwargs=kwargs),
        sketch=dataclasses.replace(config.sketch, outer=k, inner=2 * k),
        analysis=dataclasses.replace(
            config.analysis, ks=(k,), main_k=k, rhos=(config.sweep.rho,), stability_ks=(k,)
        ),
    )
    try:
        cfg = cfg.validate()
        check_study(cfg)
    except ConfigError as err:
        raise ConfigError(
            f"sweep.widths = {list(config.sweep.widths)}, width {width}: {err}"
        ) from None
    return cfg


def run_sweep(config: StudyConfig, out_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run the study for every width in ``config.sweep.widths`` and draw the size figure.

    Args:
        config: the base configuration; ``sweep.widths`` and ``sweep.rho`` set the sweep.
        out_dir: one sub-folder per width, plus ``sweep.json`` and ``size_effect.png``.
        progress: progress output.

    Raises:
        ConfigError: a width whose study could not run (checked for every width before
            the first one trains, see :func:`~curvsketch.experiments.preflight.check_study`).

    Returns:
        ``{"rows": [...], "table": str, "figure": path}``; also written to ``sweep.json``.
    """
    out = Path(out_dir)
    rows = []
    if not config.sweep.widths:
        raise ConfigError("sweep.widths is empty; e.g. widths = [20, 40, 80] under [sweep]")
    if "width" in config.model.kwargs:
        raise ConfigError(
            f"model.kwargs.width = {config.model.kwargs['width']} would be replaced by every "
            f"width of sweep.widths = {list(config.sweep.widths)}; remove it from model.kwargs"
        )
    configs = {w: _width_config(config, w) for w in config.sweep.widths}  # all, before training
    for width, cfg in configs.items():
        res = run_study(cfg, out / f"width_{width}", progress=progress, figures=False)
        for r in res["summary"]:
            rows.append({"width": width, "D": res["model"]["num_params"], **r})
    table = ["  width          D     k  step split  overlap   chance  ÷chance"]
    for r in rows:
        table.append(
            f"{r['width']:>7} {r['D']:>10,} {r['k']:>5} {r['step']:>5} {r['split']:>5} "
            f"{r['magnitude_sketched']:>8.4f} {r['chance']:>8.5f} {r['ratio_to_chance']:>8.2f}"
        )
    fig_path = _plot(rows, config.sweep.rho, out / "size_effect.png")
    summary = {
        "rho": config.sweep.rho,
        "rows": rows,
        "table": "\n".join(table),
        "figure": str(fig_path),
    }
    (out / "sweep.json").write_text(json.dumps(summary, indent=1))
    return summary


def _plot(rows: list[dict[str, Any]], rho: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for split, step in sorted({(r["split"], r["step"]) for r in rows}):
        sel = sorted(
            (r for r in rows if r["split"] == split and r["step"] == step), key=lambda r: r["D"]
        )
        ax.semilogx(
            [r["D"] for r in sel],
            [r["ratio_to_chance"] for r in sel],
            marker="o",
            label=f"H_{split}, step {step}",
        )
    ax.axhline(1.0, color="k", lw=0.8, label="chance")
    ax.set(
        xlabel="parameters D",
        ylabel="magnitude overlap ÷ chance",
        title=f"Size effect at ρ = k/D = {rho} (sketched)",
    )
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
