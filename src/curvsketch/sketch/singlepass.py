"""Single-pass recovery: ``"singlepass"`` (SEIGH) and its ``"tropp"`` variant.

* ``"singlepass"``: SEIGH, Fernandez, Schneider, Mahsereci, Hennig, "Connecting parameter
  magnitudes and Hessian eigenspaces at scale using sketched methods", TMLR 2025, §3,
  Alg. 2 — the symmetric single-pass form of Tropp, Yurtsever, Udell, Cevher, "Streaming
  low-rank matrix approximation with an application to scientific simulation", SIAM J. Sci.
  Comput. 41(4), 2019, in which the first ``outer`` of the ``inner`` products double as the
  outer sketch: exactly ``inner`` products, each independent of the others.
* ``"tropp"``: the same single pass with an *independent* outer test matrix ``Ω``, as in
  Tropp et al. (2019): ``outer + inner`` products.

:func:`run` measures in memory (:mod:`.measure`); :func:`recover_singlepass` is the pure
tensor recovery that the store (:mod:`.stored`) calls on its assembled sketches too.
"""

from __future__ import annotations

from typing import Any

import torch

from curvsketch.progress import Progress
from curvsketch.sketch.factors import (
    Factors,
    apply_test_operators,
    core_solve,
    eigh_by_magnitude,
    orthonormal_basis,
)
from curvsketch.sketch.measure import measure_outer, measure_singlepass
from curvsketch.sketch.noise import STREAM_OMEGA, STREAM_PHI, STREAM_PSI, NoiseOperator
from curvsketch.sketch.plan import SketchPlan
from curvsketch.sketch.timing import stage_timer

__all__ = ["recover_singlepass", "run"]


def run(op: Any, plan: SketchPlan, progress: Progress | None, timings: dict[str, float]) -> Factors:
    """Measure ``Y`` and ``Z`` in memory as ``plan`` says, then :func:`recover_singlepass`.

    ``"singlepass"`` takes ``Y`` from the first ``outer`` products; ``"tropp"`` measures it
    from the independent stream ``Ω`` first (``outer`` more products).
    """
    assert plan.inner is not None and plan.dtype is not None and plan.device is not None
    psi = plan.test_operator(STREAM_PSI, plan.inner)
    phi = plan.test_operator(STREAM_PHI, plan.inner)
    kw = {"block_size": plan.block_size, "dtype": plan.dtype, "device": plan.device}
    with stage_timer(timings, "measure"):
        if plan.recovery == "tropp":
            omega = plan.test_operator(STREAM_OMEGA, plan.outer)
            y = measure_outer(op, omega, plan.outer, progress=progress, **kw)
            _, z = measure_singlepass(op, psi, phi, 0, progress=progress, **kw)
        else:
            y, z = measure_singlepass(op, psi, phi, plan.outer, progress=progress, **kw)
    return recover_singlepass(y, z, phi, psi, block_size=plan.block_size, timings=timings)


def recover_singlepass(
    y: torch.Tensor,
    z: torch.Tensor,
    phi: NoiseOperator,
    psi: NoiseOperator,
    *,
    block_size: int | None = None,
    timings: dict[str, float] | None = None,
) -> Factors:
    """Single-pass symmetric recovery: SEIGH (Fernandez, Schneider, Mahsereci, Hennig,
    TMLR 2025, §3, Alg. 2), after Tropp, Yurtsever, Udell, Cevher (SIAM J. Sci. Comput. 2019).

    With ``Y = H Ψ[:o]ᵀ`` (or ``H Ωᵀ`` for an independent ``Ω``: the ``"tropp"`` variant)
    and ``Z = Φ H Ψ[:t]ᵀ``: ``Q = orth(Y)``; since
    ``H ≈ Q C Qᵀ`` gives ``Z ≈ (ΦQ) C (ΨQ)ᵀ``, the core is
    ``C = (ΦQ)⁺ Z ((ΨQ)ᵀ)⁺`` (:func:`~curvsketch.sketch.factors.core_solve`); then
    ``C ← (C + Cᵀ)/2 = W Λ Wᵀ`` and ``H ≈ (QW) Λ (QW)ᵀ``. The right factor uses ``Ψ`` — the
    test matrix whose rows were multiplied by ``H`` — not ``Φ``: with ``Φ`` on both sides
    the "core" is ``C (ΨQ)ᵀ((ΦQ)ᵀ)⁺ ≠ C``, wrong even for an exactly low-rank ``H`` and off
    by tens of percent on the top eigenvalues of indefinite spectra.

    Args:
        y: outer sketch ``(D, o)``, ``H Ψ[:o]ᵀ`` or ``H Ωᵀ``.
        z: inner sketch ``(s, t)``, ``s = phi.num_rows``, columns = ``psi`` rows ``0..t-1``.
        phi: the inner test operator ``Φ`` (``s × D``).
        psi: the test operator whose rows were multiplied by ``H``.
        block_size: columns of ``Q`` per batched test-operator transform.
        timings: optional dict; adds ``qr``, ``core``, ``eigh`` and ``eigvec`` seconds.

    Returns:
        :class:`~curvsketch.sketch.factors.Factors` ``(λ sorted by |λ|, Q, W)``.
    """
    t = z.shape[1]
    if z.shape[0] != phi.num_rows or y.shape[1] > t or t > psi.num_rows:
        raise ValueError(
            f"recover_singlepass: sketch shapes Y {tuple(y.shape)}, Z {tuple(z.shape)} do not "
            f"match Φ {phi.shape} and Ψ {psi.shape}"
        )
    with stage_timer(timings, "qr"):
        q = orthonormal_basis(y)
    with stage_timer(timings, "core"):
        phi_q, psi_q = apply_test_operators(phi, psi, q, t, block_size=block_size)
        core = core_solve(phi_q, z, psi_q)
    values, w = eigh_by_magnitude(core, timings)
    return Factors(values, q, w)
