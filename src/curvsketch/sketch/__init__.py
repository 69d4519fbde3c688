"""Sketched eigendecompositions and SVDs from operator products, with error estimates.

* :func:`seigh` — symmetric eigendecomposition (single pass, HMT two-pass, Nyström,
  block Krylov), after a two-product symmetry check (:func:`check_symmetric`);
* :func:`ssvd` — SVD of a rectangular operator;
* :func:`aposteriori_error` — error of any approximation, with probability and scree
  bounds;
* estimators with standard errors: :func:`trace` (Hutchinson, Hutch++, XTrace),
  :func:`diagonal` (Hutchinson, XDiag), :func:`spectral_density` (stochastic Lanczos
  quadrature, all probes in one block);
* test operators addressable by ``(seed, index)``: :func:`make_noise`,
  :class:`GaussianNoise`, :class:`RademacherNoise`, :class:`SSRFTNoise`;
* one validated plan per solve: :func:`make_plan` -> :class:`SketchPlan` (sizes, blocks,
  products, streams, ``which``);
* building blocks for a store layer: :func:`measure_block` and the ``recover_*``
  functions (one module per recovery, registered in :mod:`curvsketch.sketch.recovery`).

All after Tropp, Yurtsever, Udell, Cevher (2019) "Streaming low-rank matrix
approximation with an application to scientific simulation".
"""

from curvsketch.sketch.aposteriori import (
    ErrorEstimate,
    aposteriori_error,
    error_probability_bounds,
    scree_bounds,
)
from curvsketch.sketch.density import SpectralDensity, spectral_density
from curvsketch.sketch.diagonal import DIAGONAL_METHODS, DiagonalEstimate, diagonal
from curvsketch.sketch.lowrank import LowRankOperator
from curvsketch.sketch.measure import NonFiniteMeasurementError, measure_block
from curvsketch.sketch.noise import (
    NOISE_KINDS,
    GaussianNoise,
    NoiseOperator,
    RademacherNoise,
    SSRFTNoise,
    make_noise,
)
from curvsketch.sketch.plan import WHICH, SketchPlan, make_plan
from curvsketch.sketch.recovery import (
    IndefiniteOperatorError,
    core_solve,
    recover_hmt,
    recover_nystrom,
    recover_singlepass,
    recover_svd,
)
from curvsketch.sketch.result import EighResult, ResultFileError, SvdResult
from curvsketch.sketch.seigh import RECOVERIES, seigh
from curvsketch.sketch.ssvd import ssvd
from curvsketch.sketch.stored import measure, recover
from curvsketch.sketch.symmetry import (
    SYMMETRY_PRODUCTS,
    AsymmetricOperatorError,
    check_symmetric,
)
from curvsketch.sketch.trace import TRACE_METHODS, TraceEstimate, trace

__all__ = [
    "DIAGONAL_METHODS",
    "NOISE_KINDS",
    "RECOVERIES",
    "SYMMETRY_PRODUCTS",
    "TRACE_METHODS",
    "WHICH",
    "AsymmetricOperatorError",
    "DiagonalEstimate",
    "EighResult",
    "ErrorEstimate",
    "GaussianNoise",
    "IndefiniteOperatorError",
    "LowRankOperator",
    "NoiseOperator",
    "NonFiniteMeasurementError",
    "RademacherNoise",
    "ResultFileError",
    "SSRFTNoise",
    "SketchPlan",
    "SpectralDensity",
    "SvdResult",
    "TraceEstimate",
    "aposteriori_error",
    "check_symmetric",
    "core_solve",
    "diagonal",
    "error_probability_bounds",
    "make_noise",
    "make_plan",
    "measure",
    "measure_block",
    "recover",
    "recover_hmt",
    "recover_nystrom",
    "recover_singlepass",
    "recover_svd",
    "scree_bounds",
    "seigh",
    "spectral_density",
    "ssvd",
    "trace",
]
