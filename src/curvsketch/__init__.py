"""curvsketch: sketched eigendecompositions of neural-network Hessians, with error bars.

Layers (imports point down): ``cli`` → ``experiments`` → ``analysis`` / ``sketch`` →
``store`` → ``operators``. The most used names are re-exported here.
"""

__version__ = "0.1.0"

from curvsketch.analysis import (
    best_mask,
    chance_overlap,
    grassmann_metrics,
    magnitude_mask,
    mask_overlap,
    overlap,
    overlap_curve,
    principal_angles,
    random_mask,
)
from curvsketch.operators import (
    BatchNormEvalWarning,
    DenseOperator,
    EngineError,
    GGNOperator,
    HessianOperator,
    LinearOperator,
    NonDeterminismError,
    Operator,
    as_operator,
    count_targets,
    dense_ggn,
    dense_hessian,
    dense_matrix,
    dict_batches,
)
from curvsketch.progress import Progress
from curvsketch.sketch import (
    AsymmetricOperatorError,
    DiagonalEstimate,
    EighResult,
    ErrorEstimate,
    SpectralDensity,
    SvdResult,
    TraceEstimate,
    aposteriori_error,
    diagonal,
    make_noise,
    seigh,
    spectral_density,
    ssvd,
    trace,
)

__all__ = [
    "AsymmetricOperatorError",
    "BatchNormEvalWarning",
    "DenseOperator",
    "DiagonalEstimate",
    "EighResult",
    "EngineError",
    "ErrorEstimate",
    "GGNOperator",
    "HessianOperator",
    "LinearOperator",
    "NonDeterminismError",
    "Operator",
    "Progress",
    "SpectralDensity",
    "SvdResult",
    "TraceEstimate",
    "__version__",
    "aposteriori_error",
    "as_operator",
    "best_mask",
    "chance_overlap",
    "count_targets",
    "dense_ggn",
    "dense_hessian",
    "dense_matrix",
    "diagonal",
    "dict_batches",
    "grassmann_metrics",
    "magnitude_mask",
    "make_noise",
    "mask_overlap",
    "overlap",
    "overlap_curve",
    "principal_angles",
    "random_mask",
    "seigh",
    "spectral_density",
    "ssvd",
    "trace",
]
