"""Curvature operators: the linear-operator protocol, Hessian/GGN block products, references."""

from curvsketch.operators.batches import DictBatches, dict_batches
from curvsketch.operators.curvature import (
    CurvatureOperator,
    GGNOperator,
    HessianOperator,
    NonDeterminismError,
    engines_for,
)
from curvsketch.operators.dense import dense_ggn, dense_hessian, dense_matrix
from curvsketch.operators.loss_terms import CountTargets, count_targets
from curvsketch.operators.modes import BatchNormEvalWarning
from curvsketch.operators.protocol import (
    DenseOperator,
    LinearOperator,
    Operator,
    ScipyOperator,
    as_operator,
    check_block,
)
from curvsketch.operators.samples import MicroBatch, Samples
from curvsketch.operators.selection import EngineError

__all__ = [
    "BatchNormEvalWarning",
    "CountTargets",
    "CurvatureOperator",
    "DenseOperator",
    "DictBatches",
    "EngineError",
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
    "count_targets",
    "dense_ggn",
    "dense_hessian",
    "dense_matrix",
    "dict_batches",
    "engines_for",
]
