"""Pure tensor analysis: principal angles, Grassmann metrics, masks, overlap curves.

Everything here sees only tensors (or factored bases with ``.shape`` and ``.rows``); it
imports nothing from ``operators``, ``sketch``, ``experiments`` or ``cli``. The maths is
§2 of Fernandez, Schneider, Mahsereci, Hennig, "Connecting Parameter Magnitudes and
Hessian Eigenspaces at Scale using Sketched Methods" (TMLR 2025).

Masks are 1-D LongTensors of distinct indices into ``range(D)``; they are accepted on
either side of every metric without building a dense D×k matrix.
"""

from curvsketch.analysis.angles import MaskOrBasis, check_basis, principal_angles
from curvsketch.analysis.chance import (
    chance_overlap,
    chance_overlap_std,
    expected_mask_metrics,
    expected_projection_f_sq,
    limit_random_metrics,
    random_mask_overlap_std,
)
from curvsketch.analysis.grassmann import (
    DISTANCE_KEYS,
    METRIC_KEYS,
    SIMILARITY_KEYS,
    distance_maxima,
    grassmann_metrics,
    metrics_from_angles,
    overlap,
)
from curvsketch.analysis.masks import (
    best_mask,
    flatten_params,
    hamming,
    intersection_size,
    iou,
    layerwise_magnitude_mask,
    magnitude_mask,
    magnitude_order,
    random_mask,
    score_mask,
    score_order,
    validate_mask,
)
from curvsketch.analysis.metrics_study import (
    PAIR_KINDS,
    PLOT_KEYS,
    MetricsStudy,
    plot_metrics_study,
    run_metrics_study,
)
from curvsketch.analysis.overlap_curves import (
    RandomOverlapCurve,
    best_overlap_curve,
    diag_h2,
    leading_block_curve,
    mask_overlap,
    ordered_overlap_curve,
    overlap_curve,
    random_overlap_curve,
    random_overlap_draws,
    score_overlap_curve,
)
from curvsketch.analysis.rows import (
    BasisLike,
    RowAccess,
    basis_shape,
    gather_rows,
    iter_row_blocks,
    leading_columns,
    row_norms_sq,
    weighted_row_norms_sq,
)
from curvsketch.analysis.stability import iou_matrix, mask_iou_matrix, subspace_overlap_matrix

__all__ = [
    "DISTANCE_KEYS",
    "METRIC_KEYS",
    "PAIR_KINDS",
    "PLOT_KEYS",
    "SIMILARITY_KEYS",
    "BasisLike",
    "MaskOrBasis",
    "MetricsStudy",
    "RandomOverlapCurve",
    "RowAccess",
    "basis_shape",
    "best_mask",
    "best_overlap_curve",
    "chance_overlap",
    "chance_overlap_std",
    "check_basis",
    "diag_h2",
    "distance_maxima",
    "expected_mask_metrics",
    "expected_projection_f_sq",
    "flatten_params",
    "gather_rows",
    "grassmann_metrics",
    "hamming",
    "intersection_size",
    "iou",
    "iou_matrix",
    "iter_row_blocks",
    "layerwise_magnitude_mask",
    "leading_block_curve",
    "leading_columns",
    "limit_random_metrics",
    "magnitude_mask",
    "magnitude_order",
    "mask_iou_matrix",
    "mask_overlap",
    "metrics_from_angles",
    "ordered_overlap_curve",
    "overlap",
    "overlap_curve",
    "plot_metrics_study",
    "principal_angles",
    "random_mask",
    "random_mask_overlap_std",
    "random_overlap_curve",
    "random_overlap_draws",
    "row_norms_sq",
    "run_metrics_study",
    "score_mask",
    "score_order",
    "score_overlap_curve",
    "subspace_overlap_matrix",
    "validate_mask",
    "weighted_row_norms_sq",
]
