"""Pure tensor analysis: masks, principal angles, Grassmann metrics, overlap curves, chance.

Everything here sees only tensors (or factored bases with ``.shape`` and ``.rows``); it
imports nothing from ``operators``, ``sketch``, ``experiments`` or ``cli``. The maths is
§2 of Fernandez, Schneider, Mahsereci, Hennig, "Connecting Parameter Magnitudes and
Hessian Eigenspaces at Scale using Sketched Methods" (TMLR 2025).

A basis is a ``(D, k)`` tensor with orthonormal columns, or any object with ``.shape`` and
``.rows(index)`` (:class:`RowAccess`, e.g. a sketched ``EighResult``). Masks are 1-D
LongTensors of distinct indices into ``range(D)``; they are accepted on either side of
every metric without building a dense D×k matrix.

What this package exports, by task:

- **Masks** (:mod:`~curvsketch.analysis.masks`): :func:`magnitude_mask`,
  :func:`layerwise_magnitude_mask`, :func:`random_mask`, :func:`best_mask`,
  :func:`score_mask`; their agreement :func:`iou`, :func:`hamming`.
- **Angles and metrics** (:mod:`~curvsketch.analysis.angles`,
  :mod:`~curvsketch.analysis.grassmann`): :func:`principal_angles`,
  :func:`grassmann_metrics` (the seven metrics, keys :data:`METRIC_KEYS` =
  :data:`DISTANCE_KEYS` + ``overlap`` + :data:`SIMILARITY_KEYS`), :func:`overlap`;
  :func:`check_basis` checks a basis once so later calls can pass ``check=False``.
- **Overlap curves** (:mod:`~curvsketch.analysis.overlap_curves`): the overlap for every
  k = 1..o at once: :func:`overlap_curve` (magnitude masks), :func:`score_overlap_curve`
  (masks from any per-parameter score, e.g. :func:`diag_h2`),
  :func:`random_overlap_curve`, :func:`best_overlap_curve`; :func:`mask_overlap` for one
  mask.
- **Chance levels** (:mod:`~curvsketch.analysis.chance`): :func:`chance_overlap` (k/D),
  :func:`chance_overlap_std`, :func:`random_mask_overlap_std`,
  :func:`expected_mask_metrics` (every metric under random masks, exact),
  :func:`limit_random_metrics` (random subspaces, D → ∞).
- **Stability across training steps** (:mod:`~curvsketch.analysis.stability`):
  :func:`subspace_overlap_matrix`, :func:`mask_iou_matrix`, :func:`iou_matrix`.
- **Types**: :data:`BasisLike`, :class:`RowAccess`.

The building blocks behind these (row access and streaming in
:mod:`~curvsketch.analysis.rows`, mask validation and orders in
:mod:`~curvsketch.analysis.masks`, the curve kernels in
:mod:`~curvsketch.analysis.overlap_curves`, ...) stay importable from their submodules.
The synthetic study of the metrics on random pairs, which draws a figure, is
:mod:`curvsketch.experiments.metrics_study`.
"""

from curvsketch.analysis.angles import check_basis, principal_angles
from curvsketch.analysis.chance import (
    chance_overlap,
    chance_overlap_std,
    expected_mask_metrics,
    limit_random_metrics,
    random_mask_overlap_std,
)
from curvsketch.analysis.grassmann import (
    DISTANCE_KEYS,
    METRIC_KEYS,
    SIMILARITY_KEYS,
    grassmann_metrics,
    overlap,
)
from curvsketch.analysis.masks import (
    best_mask,
    hamming,
    iou,
    layerwise_magnitude_mask,
    magnitude_mask,
    random_mask,
    score_mask,
)
from curvsketch.analysis.overlap_curves import (
    best_overlap_curve,
    diag_h2,
    mask_overlap,
    overlap_curve,
    random_overlap_curve,
    score_overlap_curve,
)
from curvsketch.analysis.rows import BasisLike, RowAccess
from curvsketch.analysis.stability import iou_matrix, mask_iou_matrix, subspace_overlap_matrix

__all__ = [
    "DISTANCE_KEYS",
    "METRIC_KEYS",
    "SIMILARITY_KEYS",
    "BasisLike",
    "RowAccess",
    "best_mask",
    "best_overlap_curve",
    "chance_overlap",
    "chance_overlap_std",
    "check_basis",
    "diag_h2",
    "expected_mask_metrics",
    "grassmann_metrics",
    "hamming",
    "iou",
    "iou_matrix",
    "layerwise_magnitude_mask",
    "limit_random_metrics",
    "magnitude_mask",
    "mask_iou_matrix",
    "mask_overlap",
    "overlap",
    "overlap_curve",
    "principal_angles",
    "random_mask",
    "random_mask_overlap_std",
    "random_overlap_curve",
    "score_mask",
    "score_overlap_curve",
    "subspace_overlap_matrix",
]
