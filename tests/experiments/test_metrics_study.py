"""The synthetic study of the metrics on random pairs, and its figure (experiments layer)."""

from __future__ import annotations

import json

import pytest

from curvsketch.analysis import METRIC_KEYS
from curvsketch.experiments.metrics_study import PAIR_KINDS, plot_metrics_study, run_metrics_study


@pytest.fixture(scope="module")
def study():
    return run_metrics_study(dims=(20, 60), rhos=(0.1, 0.3, 0.5), n_samples=6, seed=1)


def test_structure_and_bands(study) -> None:
    assert study.pairs == list(PAIR_KINDS)
    assert study.ks == [[2, 6, 10], [6, 18, 30]]
    for pair in PAIR_KINDS:
        for key in METRIC_KEYS:
            for grid in (study.q05, study.median, study.q95):
                assert len(grid[pair][key]) == 2 and len(grid[pair][key][0]) == 3
            for i in range(2):
                for j in range(3):
                    lo, med, hi = (g[pair][key][i][j] for g in (study.q05, study.median, study.q95))
                    assert lo <= med + 1e-12 and med <= hi + 1e-12
    json.dumps(study.to_dict())


def test_overlap_sits_at_chance(study) -> None:
    for pair in PAIR_KINDS:
        for i, _ in enumerate(study.dims):
            for j, rho in enumerate(study.rhos):
                assert study.median[pair]["overlap"][i][j] == pytest.approx(rho, abs=0.15)
                assert study.reference[pair]["overlap"][i][j] == pytest.approx(
                    study.ks[i][j] / study.dims[i]
                )


def test_deterministic() -> None:
    a = run_metrics_study(dims=(10,), rhos=(0.3,), n_samples=3, seed=4)
    b = run_metrics_study(dims=(10,), rhos=(0.3,), n_samples=3, seed=4)
    assert a.to_dict() == b.to_dict()


def test_validation() -> None:
    with pytest.raises(ValueError, match="'rhos'"):
        run_metrics_study(rhos=(0.0,))
    with pytest.raises(ValueError, match="'pairs'"):
        run_metrics_study(pairs=("orth-banana",))
    with pytest.raises(ValueError, match="'n_samples'"):
        run_metrics_study(n_samples=1)


def test_plot_writes_png(study, tmp_path) -> None:
    path = plot_metrics_study(study, tmp_path / "sub" / "metrics.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
