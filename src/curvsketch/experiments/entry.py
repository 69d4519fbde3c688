"""What the ``curvsketch`` command runs that is not a study: its version, the metrics study.

The CLI (:mod:`curvsketch.cli`) imports :mod:`curvsketch.experiments` only (the layers of
``docs/architecture.md``); the entry points here give it what it would otherwise take from the
package facade (the version), and the synthetic study of the Grassmann metrics
(:mod:`curvsketch.experiments.metrics_study`) with its figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from curvsketch.experiments.metrics_study import plot_metrics_study, run_metrics_study

__all__ = ["METRICS_FIGURE", "metrics_study", "package_version"]

#: File name of the metrics-study figure in its output folder.
METRICS_FIGURE = "metrics_study.png"


def package_version() -> str:
    """The installed version of curvsketch (``pyproject.toml``'s, as ``pip`` recorded it).

    Read from the package metadata, so that the CLI needs no import of the package facade
    (``curvsketch.__version__``, the same number); ``"unknown"`` when curvsketch runs from
    a source tree that was never installed.
    """
    try:
        return metadata.version("curvsketch")
    except metadata.PackageNotFoundError:
        return "unknown"


def metrics_study(
    out: str | Path, *, dims: Sequence[int], samples: int = 12, seed: int = 0
) -> Path:
    """Run the synthetic study of the Grassmann metrics and draw its figure into ``out``.

    Random pairs (subspace–subspace, subspace–mask, mask–mask) over the dimensions
    ``dims`` and the ratios ρ = k/D of :func:`.metrics_study.run_metrics_study`
    (``docs/paper.md`` §2: the metrics' behaviour against chance), medians with 5–95 %
    bands per metric.

    Args:
        out: output folder (created).
        dims: the dimensions D, each >= 2.
        samples: random pairs per (D, ρ), >= 2 (for the bands).
        seed: seed of the draws.

    Returns:
        The path of the PNG figure (``out / METRICS_FIGURE``).

    Raises:
        ValueError: an empty ``dims``, a D below 2 or fewer than 2 samples.
    """
    dims = tuple(dims)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 2 for d in dims):
        raise ValueError(f"dims={dims!r}: give one or more whole dimensions D >= 2")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples={samples!r} must be an integer >= 2 (for the 5-95 % bands)")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    result = run_metrics_study(dims=dims, n_samples=samples, seed=seed)
    return plot_metrics_study(result, folder / METRICS_FIGURE)
