"""The public surface of :mod:`curvsketch.analysis` (issue 18, item 4): small, grouped,
importable, and holding every name the README uses."""

from __future__ import annotations

import importlib

import curvsketch.analysis as analysis

#: Names the README's "Masks and eigenspaces" section uses from ``curvsketch.analysis``.
README_NAMES = [
    "magnitude_mask",
    "random_mask",
    "best_mask",
    "overlap",
    "grassmann_metrics",
    "principal_angles",
    "overlap_curve",
    "random_overlap_curve",
    "chance_overlap",
    "layerwise_magnitude_mask",
    "score_overlap_curve",
    "best_overlap_curve",
    "diag_h2",
    "iou",
    "hamming",
    "subspace_overlap_matrix",
    "mask_iou_matrix",
    "expected_mask_metrics",
    "check_basis",
]


def test_all_is_sorted_unique_and_importable():
    names = analysis.__all__
    assert len(set(names)) == len(names)
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in names:
        assert getattr(analysis, name) is not None
    assert len(names) <= 32, "analysis exports only what users call; internals stay in submodules"


def test_every_export_is_named_in_the_module_docstring():
    doc = analysis.__doc__ or ""
    missing = [n for n in analysis.__all__ if n not in doc]
    assert not missing, missing


def test_readme_names_are_exported():
    assert not [n for n in README_NAMES if n not in analysis.__all__]


def test_metrics_study_lives_in_experiments():
    assert not hasattr(analysis, "run_metrics_study")
    assert importlib.util.find_spec("curvsketch.analysis.metrics_study") is None
    study = importlib.import_module("curvsketch.experiments.metrics_study")
    assert callable(study.run_metrics_study) and callable(study.plot_metrics_study)
