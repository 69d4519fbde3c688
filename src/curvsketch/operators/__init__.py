"""Curvature operators: the linear-operator protocol, Hessian/GGN block products, references."""

from curvsketch.operators.batches import DictBatches, dict_batches
from curvsketch.operators.curvature import (
    CurvatureOperator,
    GGNOperator,
    HessianOperator,
    NonDeterminismError,
    engines_for,
)
from curvsketch.operators.data_parallel import DataParallelOperator, data_parallel_operator
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
from curvsketch.operators.shards import combine_shards, shard_data, shard_samples, shard_weight

__all__ = [
    "BatchNormEvalWarning",
    "CountTargets",
    "CurvatureOperator",
    "DataParallelOperator",
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
    "combine_shards",
    "count_targets",
    "data_parallel_operator",
    "dense_ggn",
    "dense_hessian",
    "dense_matrix",
    "dict_batches",
    "engines_for",
    "shard_data",
    "shard_samples",
    "shard_weight",
]
