"""The documented schema of ``results.json`` and a validator for it.

The study checks every ``results.json`` against it before writing the file
(:func:`curvsketch.experiments.study_files.write_results`).

Top level (schema_version 2; version 1 had no ``trace``, ``density`` or ``products``):

- ``schema_version`` (int), ``name`` (str), ``settings`` (the whole configuration),
  ``model`` {``name``, ``num_params``}, ``seconds`` (float), ``reused_analyses`` (int),
  ``figures`` (list of paths relative to the output directory).
- ``training``: ``steps``, ``loss`` (training-batch loss per step), ``eval_steps``,
  ``eval_loss``, ``eval_accuracy`` (held-out, at checkpoints), ``seconds``.
- ``analyses``: one record per (step, split) with ``step``, ``split``, ``D``, ``outer``,
  ``num_products``; ``overlap``: {mask kind → {``exact``|``sketched`` → {k → overlap}}}
  for mask kinds ``magnitude``, ``random_mean``, ``random_std``, ``best``, ``gradient``,
  ``ggn_diag``, ``diag_h2`` (those configured) and ``chance`` → {``any`` → {k → k/D}};
  ``eigenvalues`` {kind → top-20 by |λ|}; ``metrics`` {ρ → {``k``, kind → the seven
  metrics and their ``*_sim``}}; ``error`` (a-posteriori estimate: ``frob_op``,
  ``frob_approx``, ``frob_residual``, ``relative_error``, scree bounds, ``num_tests``);
  ``top10_eigenvalue_max_rel_error`` / ``top50_…`` (sketched vs exact, when exact);
  ``timings`` {stage → seconds, ``trace`` and ``density`` included};
  ``products`` {stage → operator products: ``sketch`` (= ``num_products``),
  ``aposteriori``, ``trace``, ``density``, ``ggn_diag`` (on the GGN), those that ran};
  ``trace``: ``null`` (``analysis.trace_products = 0``) or {``value``, ``standard_error``
  (``null`` when there is no spread to estimate it from), ``num_products``, ``method``,
  ``deflated`` (eigenpairs of an ``hmt``/``krylov`` sketch deflated; 0 for
  ``singlepass``), ``exact`` (the exact trace, when the exact reference is on)};
  ``density``: ``null`` (``density_probes`` or ``density_steps`` = 0) or the summary of a
  stochastic-Lanczos-quadrature spectral density: {``num_probes``, ``lanczos_steps``,
  ``num_products``, ``deflated`` (spikes), ``sigma`` (Gaussian width of the broadened
  density), ``grid`` {``min``, ``max``, ``points``}, ``range`` [smallest, largest Ritz
  node or spike], ``moments`` [{``value``, ``standard_error``} of ∫λ dμ = trace/D and
  ∫λ² dμ = ‖H‖_F²/D], ``outlier_mass`` {``threshold_fraction``, ``threshold``, ``value``,
  ``standard_error``} (the fraction of eigenvalues with |λ| > threshold =
  threshold_fraction · max|node|), ``wasserstein_exact`` (1-Wasserstein distance to the
  exact spectrum, when the exact reference is on)}; the arrays are in ``arrays.npz``.
- ``stability`` {split → {``steps``, ``mask_iou`` {k → matrix}, ``eigenspace_overlap``
  {kind → {k → matrix}}}}.
- ``summary``: per (step, split) at ``analysis.main_k``: ``magnitude_sketched``,
  ``magnitude_exact``, ``abs_diff_sketched_exact``, ``random``, ``best``, ``chance``,
  ``ratio_to_chance``, ``relative_error``, ``top10_eigenvalue_max_rel_error``.

Arrays (``arrays.npz``): keys ``<split>/step_<t>/<name>`` with names ``theta_order``,
``eigenvalues_<kind>``, ``curve_<mask>_<kind>`` (entry k−1 is the overlap at k),
``curve_chance`` and, with a density, ``density_grid`` and ``density_values`` (the
broadened density ρ on the grid, width ``sigma``), ``density_nodes`` and
``density_weights`` ((P, m) Ritz values and quadrature weights per probe: the estimated
measure is (1/P) Σ weights·δ(nodes) + (1/D) Σ δ(spikes), which can be re-broadened with
another width or integrated against any f) and ``density_spikes`` (when deflated).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA_VERSION", "SchemaError", "validate_results"]

#: The version of the schema this module documents and :func:`validate_results` checks.
SCHEMA_VERSION = 2

TOP_LEVEL = {
    "schema_version": int,
    "name": str,
    "settings": dict,
    "model": dict,
    "training": dict,
    "analyses": list,
    "stability": dict,
    "summary": list,
    "reused_analyses": int,
    "seconds": float,
}
ANALYSIS = {
    "step": int,
    "split": str,
    "D": int,
    "outer": int,
    "num_products": int,
    "overlap": dict,
    "eigenvalues": dict,
    "metrics": dict,
    "error": dict,
    "timings": dict,
    "products": dict,
}
TRACE = {
    "value": float,
    "num_products": int,
    "method": str,
    "deflated": int,
}
DENSITY = {
    "num_probes": int,
    "lanczos_steps": int,
    "num_products": int,
    "deflated": int,
    "sigma": float,
    "grid": dict,
    "range": list,
    "moments": list,
    "outlier_mass": dict,
}
METRICS = (
    "geodesic",
    "chordal_2",
    "chordal_f",
    "projection_2",
    "projection_f",
    "fubini_study",
    "overlap",
)


class SchemaError(ValueError):
    """``results.json`` does not follow the documented schema."""


def _check(obj: dict[str, Any], spec: dict[str, type], where: str) -> None:
    for key, typ in spec.items():
        if key not in obj:
            raise SchemaError(f"{where}: missing key {key!r}")
        value = obj[key]
        ok = isinstance(value, (int, float)) if typ is float else isinstance(value, typ)
        if not ok or (typ is int and isinstance(value, bool)):
            raise SchemaError(f"{where}.{key}: expected {typ.__name__}, got {type(value).__name__}")


def validate_results(results: dict[str, Any]) -> None:
    """Check a ``results.json`` dict against the schema in this module's docstring.

    Raises:
        SchemaError: the first violation, with its path.
    """
    _check(results, TOP_LEVEL, "results")
    if results["schema_version"] != SCHEMA_VERSION:
        raise SchemaError(
            f"results.schema_version: expected {SCHEMA_VERSION}, got "
            f"{results['schema_version']}"
            + (
                " (written before trace and density were recorded: rerun the study)"
                if results["schema_version"] == 1
                else ""
            )
        )
    for i, a in enumerate(results["analyses"]):
        where = f"analyses[{i}]"
        _check(a, ANALYSIS, where)
        if a["split"] not in ("train", "test"):
            raise SchemaError(f"{where}.split: {a['split']!r}")
        ov = a["overlap"]
        for kind in ("magnitude", "random_mean", "best", "chance"):
            if kind not in ov:
                raise SchemaError(f"{where}.overlap: missing mask kind {kind!r}")
        if "sketched" not in ov["magnitude"]:
            raise SchemaError(f"{where}.overlap.magnitude: missing 'sketched'")
        for kind, by_source in ov.items():
            for source, by_k in by_source.items():
                for k, v in by_k.items():
                    if not (k.isdigit() and isinstance(v, float)):
                        raise SchemaError(f"{where}.overlap.{kind}.{source}[{k!r}] = {v!r}")
                    if kind != "random_std" and not -1e-9 <= v <= 1 + 1e-9:
                        raise SchemaError(
                            f"{where}.overlap.{kind}.{source}[{k}] = {v} outside [0, 1]"
                        )
        for rho, entry in a["metrics"].items():
            for source in ("exact", "sketched"):
                if source in entry:
                    missing = [m for m in METRICS if m not in entry[source]]
                    if missing:
                        raise SchemaError(f"{where}.metrics[{rho}].{source}: missing {missing}")
        if "relative_error" not in a["error"]:
            raise SchemaError(f"{where}.error: missing 'relative_error'")
        _check_estimates(a, where)


def _number_or_null(obj: dict[str, Any], key: str, where: str) -> None:
    if key not in obj:
        raise SchemaError(f"{where}: missing key {key!r} (null when there is none)")
    value = obj[key]
    where = f"{where}.{key}"
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise SchemaError(f"{where}: expected a number or null, got {type(value).__name__}")


def _check_estimates(a: dict[str, Any], where: str) -> None:
    """The ``products``, ``trace`` and ``density`` entries of one analysis record."""
    for key in ("trace", "density"):
        if key not in a:
            raise SchemaError(f"{where}: missing key {key!r} (null when not estimated)")
    for stage, n in a["products"].items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SchemaError(f"{where}.products.{stage}: expected a count, got {n!r}")
    if a["products"].get("sketch") != a["num_products"]:
        raise SchemaError(f"{where}.products.sketch must equal num_products")
    tr = a["trace"]
    if tr is not None:
        if not isinstance(tr, dict):
            raise SchemaError(f"{where}.trace: expected an object or null")
        _check(tr, TRACE, f"{where}.trace")
        _number_or_null(tr, "standard_error", f"{where}.trace")
        if a["products"].get("trace") != tr["num_products"]:
            raise SchemaError(f"{where}.products.trace must equal trace.num_products")
    de = a["density"]
    if de is None:
        return
    if not isinstance(de, dict):
        raise SchemaError(f"{where}.density: expected an object or null")
    w = f"{where}.density"
    _check(de, DENSITY, w)
    _check(de["grid"], {"min": float, "max": float, "points": int}, f"{w}.grid")
    if not de["grid"]["min"] <= de["grid"]["max"]:
        raise SchemaError(f"{w}.grid: min > max")
    if not de["sigma"] > 0:
        raise SchemaError(f"{w}.sigma: must be > 0, got {de['sigma']}")
    if len(de["range"]) != 2 or not all(isinstance(x, (int, float)) for x in de["range"]):
        raise SchemaError(f"{w}.range: expected [smallest, largest]")
    if len(de["moments"]) < 1:
        raise SchemaError(f"{w}.moments: empty")
    for i, m in enumerate(de["moments"]):
        _check(m, {"value": float}, f"{w}.moments[{i}]")
        _number_or_null(m, "standard_error", f"{w}.moments[{i}]")
    om = de["outlier_mass"]
    _check(
        om, {"threshold_fraction": float, "threshold": float, "value": float}, f"{w}.outlier_mass"
    )
    if not -1e-9 <= om["value"] <= 1 + 1e-9:
        raise SchemaError(f"{w}.outlier_mass.value = {om['value']} outside [0, 1]")
    if a["products"].get("density") != de["num_products"]:
        raise SchemaError(f"{where}.products.density must equal density.num_products")
