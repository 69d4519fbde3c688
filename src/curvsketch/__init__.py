"""curvsketch: sketched eigendecompositions of neural-network Hessians, with error bars.

Layers (imports point down): ``cli`` → ``experiments`` → ``analysis`` / ``sketch`` →
``store`` → ``operators``. The most used names are re-exported here.
"""

__version__ = "0.1.0"

from curvsketch.operators import (
    DenseOperator,
    GGNOperator,
    HessianOperator,
    LinearOperator,
    NonDeterminismError,
    Operator,
    as_operator,
    dense_ggn,
    dense_hessian,
    dense_matrix,
)

__all__ = [
    "DenseOperator",
    "GGNOperator",
    "HessianOperator",
    "LinearOperator",
    "NonDeterminismError",
    "Operator",
    "__version__",
    "as_operator",
    "dense_ggn",
    "dense_hessian",
    "dense_matrix",
]
