"""Typed records of one analysed (step, split) of the study, and their step files.

:func:`~curvsketch.experiments.measure_step.analyse_step` returns a frozen
:class:`StepAnalysis` made of three parts, each computed by its own function:

- :class:`EigenPart`: the sketched (and exact) eigenvalues, the a-posteriori error of the
  sketch, the eigenvalue errors against the exact reference, and the leading eigenvectors
  kept for the stabilisation matrices;
- :class:`SpectrumPart`: the trace and spectral-density records and arrays
  (:func:`~curvsketch.experiments.spectrum_estimates.spectrum_estimates`);
- :class:`OverlapPart`: the overlap curves of every mask kind against every basis, the
  chance curve, and the Grassmann metrics at each ρ (``docs/paper.md`` §2, §4).

The figures and the ``results.json`` / ``arrays.npz`` writers read these objects;
:meth:`StepAnalysis.record` is the ``analyses[i]`` entry of ``results.json`` (documented in
:mod:`curvsketch.experiments.schema`) and :meth:`StepAnalysis.named_arrays` its arrays
under their ``arrays.npz`` names. A step is stored as ``<key>.json`` (the record, for
people and for the fingerprint check) and ``<key>.pt`` (every field, :func:`torch.save`
of plain containers, read back with ``weights_only=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

__all__ = ["STEP_FORMAT", "EigenPart", "OverlapPart", "SpectrumPart", "StepAnalysis"]

#: Version of the ``.pt`` step files; a file of another version is recomputed.
STEP_FORMAT = 2

#: The eigenvalues listed in a record (the arrays hold all of them).
RECORD_EIGENVALUES = 20


def _stored(t: torch.Tensor) -> torch.Tensor:
    """``t`` as it is stored: detached, on the CPU, floating point in float64."""
    t = t.detach()
    return t.double().cpu() if t.is_floating_point() else t.cpu()


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


@dataclass(frozen=True)
class EigenPart:
    """The eigen part of one analysed step.

    Attributes:
        dim: D, the operator's dimension.
        outer: eigenpairs computed (``[sketch] outer`` capped at D).
        num_products: operator products of the sketch.
        eigenvalues: ``"sketched"`` (and ``"exact"`` when the exact reference ran) → the
            ``outer`` eigenvalues of largest ``|λ|``, in that order (float64, CPU).
        bases: the same kinds → their leading ``max([analysis] stability_ks)`` eigenvectors
            (float32, CPU), for the stabilisation matrices.
        error: the a-posteriori error estimate of the sketch
            (:meth:`curvsketch.ErrorEstimate.to_dict` without ``residual_samples``).
        eigenvalue_errors: ``n`` → largest relative error of the top-``n`` exact
            eigenvalues against the sketched ones (n = 10, 50; when exact).
        timings: seconds of ``exact_products``, ``exact_eigh``, ``sketch_*``, ``aposteriori``.
        products: operator products of ``sketch`` and ``aposteriori``.
    """

    dim: int
    outer: int
    num_products: int
    eigenvalues: dict[str, torch.Tensor]
    bases: dict[str, torch.Tensor]
    error: dict[str, Any]
    eigenvalue_errors: dict[int, float]
    timings: dict[str, float]
    products: dict[str, int]


@dataclass(frozen=True)
class SpectrumPart:
    """The trace and spectral density of one analysed step.

    Attributes:
        trace: the ``trace`` record of ``results.json`` (``None`` when skipped).
        density: the ``density`` record (``None`` when skipped).
        arrays: ``density_grid``, ``density_values``, ``density_nodes``,
            ``density_weights`` and (when deflated) ``density_spikes`` (float64, CPU).
        timings: seconds of ``trace`` and ``density``.
        products: operator products of ``trace`` and ``density``.
    """

    trace: dict[str, Any] | None
    density: dict[str, Any] | None
    arrays: dict[str, torch.Tensor]
    timings: dict[str, float]
    products: dict[str, int]

    @classmethod
    def of(cls, estimates: Any) -> SpectrumPart:
        """The part of a :class:`~curvsketch.experiments.spectrum_estimates.SpectrumEstimates`."""
        arrays = {name: _stored(a) for name, a in estimates.arrays.items()}
        rec = estimates.record
        return cls(
            rec["trace"], rec["density"], arrays, dict(estimates.timings), dict(estimates.products)
        )


@dataclass(frozen=True)
class OverlapPart:
    """The mask overlaps of one analysed step.

    Attributes:
        ks: the reported mask sizes (``[analysis] ks`` up to ``outer``).
        theta_order: ``(outer,)`` parameter indices by decreasing ``|θ|`` (the magnitude
            masks of every size k are its first k entries).
        curves: mask kind (``magnitude``, ``random_mean``, ``random_std``, ``best``,
            ``gradient``, ``ggn_diag``, ``diag_h2``: those configured) → basis kind
            (``sketched``, ``exact``) → ``(outer,)`` curve, entry ``k − 1`` the overlap of
            the top-k mask with the top-k eigenspace (float64, CPU).
        chance: ``(outer,)`` the chance overlap ``k/D``.
        metrics: ρ (as a string) → ``{"k": k, kind: grassmann_metrics(...)}``.
        timings: seconds of ``scores``, ``overlap_curves``, ``metrics``.
        products: operator products of the scores (``ggn_diag``, on the GGN).
    """

    ks: tuple[int, ...]
    theta_order: torch.Tensor
    curves: dict[str, dict[str, torch.Tensor]]
    chance: torch.Tensor
    metrics: dict[str, dict[str, Any]]
    timings: dict[str, float]
    products: dict[str, int]

    def at(self, mask: str, kind: str, k: int) -> float | None:
        """The overlap of ``mask`` against basis ``kind`` at a reported ``k`` (else None)."""
        curve = self.curves.get(mask, {}).get(kind)
        if curve is None or k not in self.ks or k > curve.numel():
            return None
        return float(curve[k - 1])

    def chance_at(self, k: int) -> float | None:
        """``k/D`` at a reported ``k`` (else None)."""
        return float(self.chance[k - 1]) if k in self.ks and k <= self.chance.numel() else None

    def record(self) -> dict[str, dict[str, dict[str, float]]]:
        """The ``overlap`` entry of a record: mask → kind → {k → overlap}."""

        def at_ks(curve: torch.Tensor) -> dict[str, float]:
            return {str(k): float(curve[k - 1]) for k in self.ks if k <= curve.numel()}

        out = {mask: {kind: at_ks(c) for kind, c in by.items()} for mask, by in self.curves.items()}
        out["chance"] = {"any": at_ks(self.chance)}
        return out


@dataclass(frozen=True)
class StepAnalysis:
    """One analysed (step, split): its eigen, spectrum and overlap parts.

    Attributes:
        step: the training step.
        split: ``"train"`` or ``"test"`` (the Hessian samples).
        eigen: eigenvalues, a-posteriori error and bases.
        spectrum: trace and spectral density.
        overlap: mask overlaps and Grassmann metrics.
    """

    step: int
    split: str
    eigen: EigenPart
    spectrum: SpectrumPart
    overlap: OverlapPart

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per stage, in the order the stages ran."""
        return {**self.eigen.timings, **self.spectrum.timings, **self.overlap.timings}

    @property
    def products(self) -> dict[str, int]:
        """Operator products per stage."""
        return {**self.eigen.products, **self.spectrum.products, **self.overlap.products}

    def record(self) -> dict[str, Any]:
        """The ``analyses[i]`` entry of ``results.json`` (plain JSON types)."""
        e = self.eigen
        rec: dict[str, Any] = {
            "step": self.step,
            "split": self.split,
            "D": e.dim,
            "outer": e.outer,
            "num_products": e.num_products,
            "error": e.error,
            "trace": self.spectrum.trace,
            "density": self.spectrum.density,
            "overlap": self.overlap.record(),
            "metrics": self.overlap.metrics,
        }
        for n, err in e.eigenvalue_errors.items():
            rec[f"top{n}_eigenvalue_max_rel_error"] = err
        rec["eigenvalues"] = {
            kind: lam[:RECORD_EIGENVALUES].tolist() for kind, lam in e.eigenvalues.items()
        }
        rec["timings"] = self.timings
        rec["products"] = self.products
        return rec

    def named_arrays(self) -> dict[str, torch.Tensor]:
        """Every array by its name in ``arrays.npz`` (without the ``<split>/step_<t>/``
        prefix): ``theta_order``, ``eigenvalues_<kind>``, ``curve_<mask>_<kind>``,
        ``curve_chance`` and the ``density_*`` arrays."""
        out: dict[str, torch.Tensor] = {"theta_order": self.overlap.theta_order}
        out.update({f"eigenvalues_{k}": v for k, v in self.eigen.eigenvalues.items()})
        out.update(self.spectrum.arrays)
        for mask, by_kind in self.overlap.curves.items():
            out.update({f"curve_{mask}_{kind}": c for kind, c in by_kind.items()})
        out["curve_chance"] = self.overlap.chance
        return out

    def to_blob(self) -> dict[str, Any]:
        """Every field as plain containers and tensors (for :func:`torch.save`)."""
        return {
            "format": STEP_FORMAT,
            "step": self.step,
            "split": self.split,
            "eigen": _fields(self.eigen),
            "spectrum": _fields(self.spectrum),
            "overlap": _fields(self.overlap),
        }

    @classmethod
    def from_blob(cls, blob: Any) -> StepAnalysis:
        """Inverse of :meth:`to_blob`.

        Raises:
            ValueError: ``blob`` is not a step of :data:`STEP_FORMAT` (an older file).
            KeyError, TypeError: a damaged blob.
        """
        if not isinstance(blob, dict) or blob.get("format") != STEP_FORMAT:
            raise ValueError(f"not a step file of format {STEP_FORMAT}")
        return cls(
            blob["step"],
            blob["split"],
            EigenPart(**blob["eigen"]),
            SpectrumPart(**blob["spectrum"]),
            OverlapPart(**blob["overlap"]),
        )
