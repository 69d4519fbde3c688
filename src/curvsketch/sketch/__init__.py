"""Sketched eigendecompositions and SVDs from operator products, with error estimates.

What this package exports, by task (``__all__`` is grouped the same way):

* **Decompositions.** :func:`seigh` — symmetric eigendecomposition (single pass, HMT
  two-pass, Nyström, block Krylov; names in :data:`RECOVERIES`, ends in :data:`WHICH`),
  after a two-product symmetry check (:func:`check_symmetric`,
  :data:`SYMMETRY_PRODUCTS`); :func:`ssvd` — SVD of a rectangular operator.
* **Error estimates.** :func:`aposteriori_error` — error of any approximation, with
  :func:`error_probability_bounds` and :func:`scree_bounds`.
* **Estimators** with standard errors: :func:`trace` (Hutchinson, Hutch++, XTrace, Krylov:
  :data:`TRACE_METHODS`), :func:`diagonal` (Hutchinson, XDiag: :data:`DIAGONAL_METHODS`),
  :func:`spectral_density` (stochastic Lanczos quadrature, all probes in one block).
* **Plans.** One validated plan per solve: :func:`make_plan` -> :class:`SketchPlan`
  (sizes, blocks, products, streams, ``which``).
* **Stores and workers.** :func:`measure` (one worker's share of the blocks) and
  :func:`recover` (from a store, out of core above a memory budget).
* **Test operators** addressable by ``(seed, index)``: :func:`make_noise`
  (:data:`NOISE_KINDS`), :class:`GaussianNoise`, :class:`RademacherNoise`,
  :class:`SSRFTNoise`.
* **Results**, frozen and saveable: :class:`EighResult`, :class:`SvdResult`,
  :class:`ErrorEstimate`, :class:`TraceEstimate`, :class:`DiagonalEstimate`,
  :class:`SpectralDensity`.
* **Errors**: :class:`AsymmetricOperatorError`, :class:`IndefiniteOperatorError`
  (``recovery="nystrom"``), :class:`KrylovOrthogonalityError`,
  :class:`NonFiniteMeasurementError`, :class:`ResultFileError`.

The building blocks behind these stay importable from their submodules: the pure tensor
recoveries ``recover_singlepass`` (:mod:`.singlepass`), ``recover_hmt`` (:mod:`.hmt`),
``recover_nystrom`` (:mod:`.nystrom`), ``recover_svd`` (:mod:`.ssvd`) and ``core_solve``
(:mod:`.factors`), all also in :mod:`.recovery` (the registry); ``measure_block``
(:mod:`.measure`); ``NoiseOperator`` (:mod:`.noise`); ``LowRankOperator``
(:mod:`.lowrank`, what :meth:`EighResult.as_operator` returns).

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
from curvsketch.sketch.krylov import KrylovOrthogonalityError
from curvsketch.sketch.measure import NonFiniteMeasurementError
from curvsketch.sketch.noise import (
    NOISE_KINDS,
    GaussianNoise,
    RademacherNoise,
    SSRFTNoise,
    make_noise,
)
from curvsketch.sketch.nystrom import IndefiniteOperatorError
from curvsketch.sketch.plan import WHICH, SketchPlan, make_plan
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

__all__ = [  # noqa: RUF022 - grouped by task as in the module docstring
    # decompositions
    "RECOVERIES",
    "SYMMETRY_PRODUCTS",
    "WHICH",
    "check_symmetric",
    "seigh",
    "ssvd",
    # error estimates
    "aposteriori_error",
    "error_probability_bounds",
    "scree_bounds",
    # estimators
    "DIAGONAL_METHODS",
    "TRACE_METHODS",
    "diagonal",
    "spectral_density",
    "trace",
    # plans
    "SketchPlan",
    "make_plan",
    # stores and workers
    "measure",
    "recover",
    # test operators
    "NOISE_KINDS",
    "GaussianNoise",
    "RademacherNoise",
    "SSRFTNoise",
    "make_noise",
    # results
    "DiagonalEstimate",
    "EighResult",
    "ErrorEstimate",
    "SpectralDensity",
    "SvdResult",
    "TraceEstimate",
    # errors
    "AsymmetricOperatorError",
    "IndefiniteOperatorError",
    "KrylovOrthogonalityError",
    "NonFiniteMeasurementError",
    "ResultFileError",
]
