"""curvsketch: sketched eigendecompositions of neural-network Hessians, with error bars.

Layers (imports point down): ``cli`` → ``experiments`` → ``analysis`` / ``sketch`` →
``store`` → ``operators``. The most used names are re-exported here, grouped by the
package that defines them (each package's docstring lists all it exports):

* operators (:mod:`curvsketch.operators`): :class:`HessianOperator`, :class:`GGNOperator`,
  the protocol (:class:`Operator`, :class:`LinearOperator`, :class:`DenseOperator`,
  :func:`as_operator`), data helpers (:func:`dict_batches`, :func:`count_targets`), the
  exact references (:func:`dense_hessian`, :func:`dense_ggn`, :func:`dense_matrix`) and
  their warnings and errors;
* sketches and estimators (:mod:`curvsketch.sketch`): :func:`seigh`, :func:`ssvd`,
  :func:`aposteriori_error`, :func:`trace`, :func:`diagonal`, :func:`spectral_density`,
  :func:`make_noise`, their result classes and :class:`AsymmetricOperatorError`;
* masks and eigenspaces (:mod:`curvsketch.analysis`): :func:`magnitude_mask`,
  :func:`random_mask`, :func:`best_mask`, :func:`overlap`, :func:`mask_overlap`,
  :func:`overlap_curve`, :func:`principal_angles`, :func:`grassmann_metrics`,
  :func:`chance_overlap`;
* :class:`Progress` (:mod:`curvsketch.progress`).
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

__all__ = [  # noqa: RUF022 - grouped as in the module docstring
    "__version__",
    # operators (curvsketch.operators)
    "BatchNormEvalWarning",
    "DenseOperator",
    "EngineError",
    "GGNOperator",
    "HessianOperator",
    "LinearOperator",
    "NonDeterminismError",
    "Operator",
    "as_operator",
    "count_targets",
    "dense_ggn",
    "dense_hessian",
    "dense_matrix",
    "dict_batches",
    # sketches, estimators and their results (curvsketch.sketch)
    "AsymmetricOperatorError",
    "DiagonalEstimate",
    "EighResult",
    "ErrorEstimate",
    "SpectralDensity",
    "SvdResult",
    "TraceEstimate",
    "aposteriori_error",
    "diagonal",
    "make_noise",
    "seigh",
    "spectral_density",
    "ssvd",
    "trace",
    # masks and eigenspaces (curvsketch.analysis)
    "best_mask",
    "chance_overlap",
    "grassmann_metrics",
    "magnitude_mask",
    "mask_overlap",
    "overlap",
    "overlap_curve",
    "principal_angles",
    "random_mask",
    # progress bars (curvsketch.progress)
    "Progress",
]
