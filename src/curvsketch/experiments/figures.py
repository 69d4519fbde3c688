"""Figures of a study, drawn from its typed steps and its ``results.json`` content.

Every per-step number and curve is read from the
:class:`~curvsketch.experiments.step_records.StepAnalysis` objects of the run
(``results.steps``); the stabilisation matrices and the training time from the
``results.json`` dict itself.

Equivalents of the figures of Fernandez et al. (TMLR 2025), ``docs/paper.md`` §4:
overlap vs step (exact, sketched, random, chance), overlap ÷ chance vs k at several steps,
the mask study (best / magnitude / random / chance vs k), Grassmann metrics over training,
stabilisation heatmaps, spectra, runtime per stage, and other per-parameter scores; and
the spectral density per step on a log scale (as Ghorbani, Krishnan & Xiao, ICML 2019).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from curvsketch.experiments.metrics_study import PLOT_KEYS
from curvsketch.experiments.step_records import StepAnalysis
from curvsketch.experiments.study_files import StudyResult

__all__ = ["draw_all"]

KIND_STYLE = {"exact": "-", "sketched": "--"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _analyses(results: StudyResult, split: str) -> list[StepAnalysis]:
    return sorted((a for a in results.steps if a.split == split), key=lambda a: a.step)


def _splits(results: StudyResult) -> list[str]:
    return list(dict.fromkeys(a.split for a in results.steps))


def _curve(a: StepAnalysis, mask: str, kind: str) -> np.ndarray | None:
    curve = a.overlap.curves.get(mask, {}).get(kind)
    return None if curve is None else curve.numpy()


def _panels_per_split(results: StudyResult) -> tuple[Any, list[tuple[Any, str]]]:
    """A figure with one panel per Hessian split, and its ``(axes, split)`` pairs."""
    splits = _splits(results)
    fig, axes = _plt().subplots(1, len(splits), figsize=(5.2 * len(splits), 3.8), squeeze=False)
    return fig, list(zip(axes[0], splits, strict=True))


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def overlap_vs_step(results: StudyResult, path: Path) -> Path:
    """Magnitude-mask overlap at the main k vs step: exact, sketched, random, chance."""
    k = int(results["settings"]["analysis"]["main_k"])
    fig, panels = _panels_per_split(results)
    for ax, split in panels:
        an = [
            a
            for a in _analyses(results, split)
            if a.overlap.at("magnitude", "sketched", k) is not None
        ]
        steps = [a.step for a in an]
        for kind in ("exact", "sketched"):
            vals = [a.overlap.at("magnitude", kind, k) for a in an]
            if all(v is not None for v in vals) and vals:
                ax.plot(steps, vals, KIND_STYLE[kind], marker="o", label=f"magnitude mask ({kind})")
        rnd = np.array([a.overlap.at("random_mean", "sketched", k) for a in an])
        ax.plot(steps, rnd, ":", marker=".", color="gray", label="random mask (mean)")
        chance = an[0].overlap.chance_at(k) if an else 0
        ax.axhline(chance, color="k", lw=0.8, label="chance k/D")
        ax.set(
            xlabel="SGD step",
            ylabel=f"overlap at k = {k}",
            title=f"H_{split}: mask vs top-{k} eigenspace",
        )
        ax.legend(fontsize=8)
    return _save(fig, path)


def ratio_vs_k(results: StudyResult, path: Path) -> Path:
    """Magnitude overlap ÷ chance for every k at several steps (sketched, log-log)."""
    fig, panels = _panels_per_split(results)
    for ax, split in panels:
        for a in _analyses(results, split):
            c = _curve(a, "magnitude", "sketched")
            if c is None:
                continue
            k = np.arange(1, c.size + 1)
            ax.loglog(k, np.maximum(c / a.overlap.chance.numpy(), 1e-6), label=f"step {a.step}")
        ax.axhline(1.0, color="k", lw=0.8, label="chance")
        ax.set(xlabel="k", ylabel="overlap ÷ chance", title=f"H_{split}: magnitude mask, sketched")
        ax.legend(fontsize=8)
    return _save(fig, path)


def mask_study(results: StudyResult, path: Path) -> Path:
    """Best / magnitude / random / chance overlap vs k at the last analysed step."""
    fig, panels = _panels_per_split(results)
    for ax, split in panels:
        last = _analyses(results, split)[-1]
        step = last.step
        kind = "exact" if _curve(last, "best", "exact") is not None else "sketched"
        curve = {
            n: _curve(last, n, kind) for n in ("best", "magnitude", "random_mean", "random_std")
        }
        k = np.arange(1, curve["magnitude"].size + 1)
        ax.plot(k, curve["best"], label="best mask")
        ax.plot(k, curve["magnitude"], label="magnitude mask")
        m, s = curve["random_mean"], curve["random_std"]
        ax.plot(k, m, label="random mask (mean ± std)")
        ax.fill_between(k, m - s, m + s, alpha=0.3)
        ax.plot(k, last.overlap.chance.numpy(), "k:", label="chance k/D")
        ax.set(xlabel="k", ylabel="overlap", title=f"H_{split}, step {step} ({kind})")
        ax.legend(fontsize=8)
    return _save(fig, path)


def scores_study(results: StudyResult, path: Path) -> Path:
    """Overlap vs k for masks from several per-parameter scores (last step, sketched)."""
    fig, panels = _panels_per_split(results)
    for ax, split in panels:
        last = _analyses(results, split)[-1]
        step = last.step
        for name in ("magnitude", "gradient", "ggn_diag", "diag_h2", "best"):
            c = _curve(last, name, "sketched")
            if c is not None:
                ax.plot(np.arange(1, c.size + 1), c, label=name.replace("_", " "))
        chance = last.overlap.chance.numpy()
        ax.plot(np.arange(1, chance.size + 1), chance, "k:", label="chance")
        ax.set(xlabel="k", ylabel="overlap", title=f"H_{split}, step {step}: masks from scores")
        ax.legend(fontsize=8)
    return _save(fig, path)


def metrics_over_training(results: StudyResult, path: Path) -> Path:
    """The seven metrics (as similarities, 1 = identical) between magnitude mask and eigenspace."""
    plt = _plt()
    split = _splits(results)[-1]
    an = _analyses(results, split)
    rhos = list(an[0].overlap.metrics) if an else []
    names = list(PLOT_KEYS)
    fig, axes = plt.subplots(
        1, max(len(rhos), 1), figsize=(4.3 * max(len(rhos), 1), 3.8), squeeze=False
    )
    for ax, rho in zip(axes[0], rhos, strict=False):
        steps = [a.step for a in an]
        kind = "exact" if "exact" in an[0].overlap.metrics[rho] else "sketched"
        for n in names:
            ax.plot(
                steps,
                [a.overlap.metrics[rho][kind][n] for a in an],
                marker=".",
                label=n.replace("_sim", ""),
            )
        k = an[0].overlap.metrics[rho]["k"]
        ax.set(
            xlabel="SGD step",
            ylabel="similarity (1 − d/max)",
            title=f"H_{split}, ρ = {rho} (k = {k}, {kind})",
        )
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def stabilisation(results: StudyResult, path: Path) -> Path:
    """Heatmaps: magnitude-mask IoU and top-k eigenspace overlap between pairs of steps."""
    plt = _plt()
    split = _splits(results)[-1]
    st = results["stability"][split]
    ks = list(st["mask_iou"])
    kind = "exact" if "exact" in st["eigenspace_overlap"] else "sketched"
    fig, axes = plt.subplots(
        2, max(len(ks), 1), figsize=(3.6 * max(len(ks), 1), 6.6), squeeze=False
    )
    labels = [str(s) for s in st["steps"]]
    for j, k in enumerate(ks):
        for i, (title, mat) in enumerate(
            (
                ("mask IoU", st["mask_iou"][k]),
                (f"eigenspace overlap ({kind})", st["eigenspace_overlap"].get(kind, {}).get(k)),
            )
        ):
            ax = axes[i][j]
            if mat is None:
                ax.axis("off")
                continue
            im = ax.imshow(np.array(mat), vmin=0, vmax=1, cmap="viridis")
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            ax.set_title(f"{title}, k = {k}", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"Stabilisation between steps (H_{split})")
    return _save(fig, path)


def spectrum(results: StudyResult, path: Path) -> Path:
    """Eigenvalues by |λ| rank: sketched (dashed) against exact (solid) at each step."""
    plt = _plt()
    split = _splits(results)[-1]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, a in enumerate(_analyses(results, split)):
        for kind in ("exact", "sketched"):
            lam = a.eigen.eigenvalues.get(kind)
            if lam is not None:
                ax.semilogy(
                    np.arange(1, lam.numel() + 1),
                    np.abs(lam.numpy()),
                    KIND_STYLE[kind],
                    label=f"step {a.step} ({kind})",
                    color=f"C{i}",
                    lw=1,
                )
    ax.set(
        xlabel="rank by |λ|",
        ylabel="|λ|",
        title=f"H_{split} spectrum: exact (solid) vs sketched (dashed)",
    )
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


#: Densities below this are drawn at it (the log scale needs a floor; SLQ's Gaussian
#: tails fall to 0 in floating point).
DENSITY_FLOOR = 1e-6


def _has_density(results: StudyResult) -> bool:
    return any(a.spectrum.density for a in results.steps)


def density(results: StudyResult, path: Path) -> Path:
    """The spectral density (SLQ, Gaussian-broadened) per step, log scale in density."""
    fig, panels = _panels_per_split(results)
    for ax, split in panels:
        for i, a in enumerate(_analyses(results, split)):
            grid = a.spectrum.arrays.get("density_grid")
            values = a.spectrum.arrays.get("density_values")
            d = a.spectrum.density
            if grid is None or values is None or not d:
                continue
            spikes = f", {d['deflated']} deflated" if d["deflated"] else ""
            ax.semilogy(
                grid.numpy(),
                np.maximum(values.numpy(), DENSITY_FLOOR),
                color=f"C{i}",
                lw=1,
                label=f"step {a.step} (σ = {d['sigma']:.2g}{spikes})",
            )
        ax.set_ylim(bottom=DENSITY_FLOOR)
        ax.set(
            xlabel="eigenvalue λ",
            ylabel="density",
            title=f"H_{split}: spectral density (SLQ)",
        )
        ax.legend(fontsize=7)
    return _save(fig, path)


def runtime(results: StudyResult, path: Path) -> Path:
    """Seconds per stage, summed over all analyses."""
    plt = _plt()
    totals: dict[str, float] = {"training": results["training"]["seconds"]}
    for a in results.steps:
        for k, v in a.timings.items():
            if k != "sketch_total":
                totals[k] = totals.get(k, 0.0) + v
    fig, ax = plt.subplots(figsize=(6, 3.8))
    names = list(totals)
    ax.barh(names, [totals[n] for n in names])
    ax.set(xlabel="seconds (all steps and splits)", title="Runtime per stage")
    return _save(fig, path)


def draw_all(results: StudyResult, folder: Path) -> list[Path]:
    """Draw every figure of a study into ``folder``; return the paths written."""
    folder = Path(folder)
    drawers = {
        "overlap_vs_step.png": overlap_vs_step,
        "overlap_ratio_vs_k.png": ratio_vs_k,
        "mask_study.png": mask_study,
        "scores.png": scores_study,
        "metrics_over_training.png": metrics_over_training,
        "stabilisation.png": stabilisation,
        "spectrum.png": spectrum,
        "runtime.png": runtime,
    }
    if _has_density(results):
        drawers["density.png"] = density
    return [draw(results, folder / name) for name, draw in drawers.items()]
