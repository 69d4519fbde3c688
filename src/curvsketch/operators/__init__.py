"""Curvature operators: the linear-operator protocol, Hessian/GGN block products, references."""

from curvsketch.operators.curvature import (
    CurvatureOperator,
    GGNOperator,
    HessianOperator,
    NonDeterminismError,
    engines_for,
)
from curvsketch.operators.dense import dense_ggn, dense_hessian, dense_matrix
from curvsketch.operators.protocol import (
    DenseOperator,
    LinearOperator,
    Operator,
    ScipyOperator,
    as_operator,
    check_block,
)
from curvsketch.operators.samples import MicroBatch, Samples

__all__ = [
    "CurvatureOperator",
    "DenseOperator",
    "GGNOperator",
    "HessianOperator",
    "LinearOperator",
    "MicroBatch",
    "NonDeterminismError",
    "Operator",
    "Samples",
    "ScipyOperator",
    "as_operator",
    "check_block",
    "dense_ggn",
    "dense_hessian",
    "dense_matrix",
    "engines_for",
]
