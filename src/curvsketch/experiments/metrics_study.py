"""Synthetic study of the Grassmann metrics on random pairs (vs D and vs ρ = k/D).

Reproduces the paper's argument for the overlap (Fernandez et al., TMLR 2025, §2): on
random pairs, chordal_2, projection_2 and Fubini–Study sit at their maxima for any
moderately large D and cannot discriminate; geodesic, chordal_f and projection_f are
stable in D but curved in ρ; the overlap is stable in D and equals ρ on average.

Three kinds of pairs are drawn: ``"orth-orth"`` (two orthonormal bases, each the Q of a
Gaussian D×k matrix, i.e. Haar-random spans), ``"orth-mask"`` (such a basis against a
uniformly random k-mask) and ``"mask-mask"`` (two random masks).

A study with a figure, so it lives in ``experiments`` and uses only the public metric
functions of :mod:`curvsketch.analysis`; ``curvsketch metrics-study`` runs it
(:func:`curvsketch.experiments.entry.metrics_study`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from curvsketch.analysis import (
    METRIC_KEYS,
    SIMILARITY_KEYS,
    expected_mask_metrics,
    grassmann_metrics,
    limit_random_metrics,
)

__all__ = ["PAIR_KINDS", "PLOT_KEYS", "MetricsStudy", "plot_metrics_study", "run_metrics_study"]

PAIR_KINDS: tuple[str, ...] = ("orth-orth", "orth-mask", "mask-mask")
#: The seven similarities plotted (1 = identical spans).
PLOT_KEYS: tuple[str, ...] = (*SIMILARITY_KEYS, "overlap")

Grid = list[list[float]]


@dataclass
class MetricsStudy:
    """Result of :func:`run_metrics_study`; plain lists, JSON-serialisable via ``to_dict``.

    Every grid is indexed ``[pair][metric][i_dim][i_rho]`` (metric keys as in
    :data:`curvsketch.analysis.METRIC_KEYS`).

    Attributes:
        dims: The ambient dimensions D.
        rhos: The requested ratios ρ; the k used is ``ks[i_dim][i_rho]``.
        ks: ``max(1, round(ρ D))`` for each (D, ρ).
        n_samples: Pairs drawn per (pair kind, D, ρ).
        seed: Seed of the generator that drew everything.
        pairs: The pair kinds studied.
        median: Median over samples.
        q05: 5 % quantile.
        q95: 95 % quantile.
        reference: Theory: the D → ∞ Wachter limit for pairs with a random subspace
            (``overlap`` and the ``*_sim`` keys only), the exact expectation for
            mask–mask pairs (see :mod:`curvsketch.analysis.chance`).
    """

    dims: list[int]
    rhos: list[float]
    ks: list[list[int]]
    n_samples: int
    seed: int
    pairs: list[str]
    median: dict[str, dict[str, Grid]] = field(default_factory=dict)
    q05: dict[str, dict[str, Grid]] = field(default_factory=dict)
    q95: dict[str, dict[str, Grid]] = field(default_factory=dict)
    reference: dict[str, dict[str, Grid]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A plain nested dict (for ``json.dump``)."""
        return asdict(self)


def _draw(kind: str, D: int, k: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "orth":
        return torch.linalg.qr(torch.randn(D, k, dtype=torch.float64, generator=gen)).Q
    return torch.randperm(D, generator=gen)[:k]


def run_metrics_study(
    dims: Sequence[int] = (32, 64, 128),
    rhos: Sequence[float] = (0.05, 0.1, 0.2, 0.35, 0.5),
    *,
    n_samples: int = 12,
    seed: int = 0,
    pairs: Sequence[str] = PAIR_KINDS,
) -> MetricsStudy:
    """Draw random pairs over a grid of D and ρ and summarise every metric.

    For each pair kind, D and ρ: ``k = max(1, round(ρ D))``, ``n_samples`` independent
    pairs, all metrics of :func:`curvsketch.analysis.grassmann_metrics`, then
    the median and the 5–95 % band. The defaults run in about a second on one CPU core.

    Args:
        dims: Ambient dimensions D (each ≥ 2).
        rhos: Ratios k/D in ``(0, 1]``.
        n_samples: Pairs per cell (≥ 2).
        seed: Seed of one CPU generator that draws everything, in a fixed order.
        pairs: Subset of :data:`PAIR_KINDS`.

    Returns:
        A :class:`MetricsStudy`.
    """
    dims = [int(d) for d in dims]
    rhos = [float(r) for r in rhos]
    if not dims or min(dims) < 2:
        raise ValueError(f"'dims' must be a non-empty list of ints ≥ 2, got {dims}")
    if not rhos or not all(0.0 < r <= 1.0 for r in rhos):
        raise ValueError(f"'rhos' must be a non-empty list of ratios in (0, 1], got {rhos}")
    if n_samples < 2:
        raise ValueError(f"'n_samples' must be ≥ 2 for quantiles, got {n_samples}")
    bad = [p for p in pairs if p not in PAIR_KINDS]
    if bad or not pairs:
        raise ValueError(f"'pairs' must be a non-empty subset of {PAIR_KINDS}, got {list(pairs)}")
    ks = [[max(1, round(r * D)) for r in rhos] for D in dims]
    result = MetricsStudy(dims, rhos, ks, int(n_samples), int(seed), list(pairs))
    gen = torch.Generator().manual_seed(int(seed))
    probs = torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)
    for pair in pairs:
        kind_a, kind_b = pair.split("-")
        stats = {name: {key: [] for key in METRIC_KEYS} for name in ("q05", "median", "q95")}
        ref: dict[str, Grid] = {}
        for i, D in enumerate(dims):
            for name in stats:
                for key in METRIC_KEYS:
                    stats[name][key].append([])
            for k in ks[i]:
                samples = [
                    grassmann_metrics(
                        _draw(kind_a, D, k, gen), _draw(kind_b, D, k, gen), check=False
                    )
                    for _ in range(n_samples)
                ]
                for key in METRIC_KEYS:
                    vals = torch.tensor([s[key] for s in samples], dtype=torch.float64)
                    q = torch.quantile(vals, probs)
                    for name, value in zip(("q05", "median", "q95"), q.tolist(), strict=True):
                        stats[name][key][i].append(value)
                theory = (
                    expected_mask_metrics(k, D)
                    if pair == "mask-mask"
                    else limit_random_metrics(k / D)
                )
                for key, value in theory.items():
                    ref.setdefault(key, [[] for _ in dims])[i].append(value)
        result.q05[pair] = stats["q05"]
        result.median[pair] = stats["median"]
        result.q95[pair] = stats["q95"]
        result.reference[pair] = ref
    return result


def plot_metrics_study(result: MetricsStudy, path: str | Path) -> Path:
    """Plot the study: one row per pair kind; left vs ρ (largest D), right vs D (middle ρ).

    Lines are medians, shaded bands the 5–95 % range, dotted lines the theory of
    ``result.reference``; the dashed black line is the chance overlap ρ.
    Uses matplotlib's Agg canvas (imported here, no pyplot state).

    Args:
        result: Output of :func:`run_metrics_study`.
        path: Output PNG path (parent folders are created).

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_rows = len(result.pairs)
    fig = Figure(figsize=(11, 3.2 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, 2, squeeze=False)
    i_dim = len(result.dims) - 1
    j_rho = len(result.rhos) // 2
    colors = [f"C{c}" for c in range(len(PLOT_KEYS))]
    for row, pair in enumerate(result.pairs):
        ax_r, ax_d = axes[row]
        for key, color in zip(PLOT_KEYS, colors, strict=True):
            med, lo, hi = (getattr(result, n)[pair][key] for n in ("median", "q05", "q95"))
            ax_r.plot(result.rhos, med[i_dim], "o-", color=color, ms=3, label=key)
            ax_r.fill_between(result.rhos, lo[i_dim], hi[i_dim], color=color, alpha=0.15)
            ref = result.reference[pair].get(key)
            if ref is not None:
                ax_r.plot(result.rhos, ref[i_dim], ":", color=color, lw=1)
            ax_d.plot(result.dims, [m[j_rho] for m in med], "o-", color=color, ms=3)
            ax_d.fill_between(
                result.dims, [v[j_rho] for v in lo], [v[j_rho] for v in hi], color=color, alpha=0.15
            )
        ax_r.plot(result.rhos, result.rhos, "--", color="k", lw=1, label="chance ρ")
        ax_r.set(
            xlabel="ρ = k/D",
            ylabel="similarity (1 = identical)",
            title=f"{pair}, D = {result.dims[i_dim]}",
            ylim=(-0.05, 1.05),
        )
        ax_d.axhline(result.rhos[j_rho], ls="--", color="k", lw=1)
        ax_d.set(
            xlabel="D",
            xscale="log",
            title=f"{pair}, ρ = {result.rhos[j_rho]:g}",
            ylim=(-0.05, 1.05),
        )
    axes[0][0].legend(fontsize=7, ncols=2)
    fig.suptitle(
        f"Grassmann metrics on random pairs (median, 5–95 %; {result.n_samples} samples; "
        "dotted: theory)"
    )
    fig.savefig(path, dpi=110)
    return path
