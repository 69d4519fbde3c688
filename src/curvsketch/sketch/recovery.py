"""The registry of the recoveries of :func:`curvsketch.sketch.seigh`, one module each.

Every recovery is a :class:`~curvsketch.sketch.factors.Recovery`: a function
``run(op, plan, progress, timings) -> Factors`` that reads its sizes from one
:class:`~curvsketch.sketch.plan.SketchPlan`. Adding a recovery means one new module, one
line in :data:`REGISTRY` and its name in :data:`curvsketch.sketch.plan.RECOVERIES`.

* ``"singlepass"``, ``"tropp"``: :mod:`.singlepass` (Fernandez et al., TMLR 2025, §3,
  Alg. 2; Tropp, Yurtsever, Udell, Cevher 2019);
* ``"hmt"``: :mod:`.hmt` (Halko, Martinsson, Tropp 2011, Alg. 4.4 + 5.3);
* ``"nystrom"``: :mod:`.nystrom` (Tropp et al., NeurIPS 2017, Alg. 3);
* ``"krylov"``: :mod:`.krylov` (Musco & Musco, NeurIPS 2015, Alg. 2).

The pure tensor recoveries (``recover_*``, :func:`core_solve`, …) stay importable from
here as before the recut; they live in the modules above and in :mod:`.factors`.
"""

from __future__ import annotations

from curvsketch.sketch.factors import (
    Factors,
    Recovery,
    apply_test_operators,
    core_solve,
    eigh_by_magnitude,
    orthonormal_basis,
    sort_by_magnitude,
)
from curvsketch.sketch.hmt import recover_hmt
from curvsketch.sketch.hmt import run as run_hmt
from curvsketch.sketch.krylov import run as run_krylov
from curvsketch.sketch.nystrom import PSD_TOLERANCE, IndefiniteOperatorError, recover_nystrom
from curvsketch.sketch.nystrom import run as run_nystrom
from curvsketch.sketch.plan import RECOVERIES
from curvsketch.sketch.singlepass import recover_singlepass
from curvsketch.sketch.singlepass import run as run_singlepass
from curvsketch.sketch.ssvd import recover_svd
from curvsketch.sketch.timing import split_threads, stage_timer

__all__ = [
    "PSD_TOLERANCE",
    "RECOVERIES",
    "REGISTRY",
    "Factors",
    "IndefiniteOperatorError",
    "Recovery",
    "apply_test_operators",
    "core_solve",
    "eigh_by_magnitude",
    "get_recovery",
    "orthonormal_basis",
    "recover_hmt",
    "recover_nystrom",
    "recover_singlepass",
    "recover_svd",
    "sort_by_magnitude",
    "split_threads",
    "stage_timer",
]

#: Recovery name -> its ``run``.
REGISTRY: dict[str, Recovery] = {
    "singlepass": run_singlepass,
    "tropp": run_singlepass,
    "hmt": run_hmt,
    "nystrom": run_nystrom,
    "krylov": run_krylov,
}
assert tuple(REGISTRY) == RECOVERIES


def get_recovery(name: str) -> Recovery:
    """The ``run`` of recovery ``name`` (one of :data:`RECOVERIES`)."""
    if name not in REGISTRY:
        raise ValueError(f"recovery={name!r} is not one of {', '.join(RECOVERIES)}")
    return REGISTRY[name]
