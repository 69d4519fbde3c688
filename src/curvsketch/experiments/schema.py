"""The documented schema of ``results.json`` and a validator for it.

Top level (schema_version 1):

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
  ``timings`` {stage → seconds}.
- ``stability`` {split → {``steps``, ``mask_iou`` {k → matrix}, ``eigenspace_overlap``
  {kind → {k → matrix}}}}.
- ``summary``: per (step, split) at ``analysis.main_k``: ``magnitude_sketched``,
  ``magnitude_exact``, ``abs_diff_sketched_exact``, ``random``, ``best``, ``chance``,
  ``ratio_to_chance``, ``relative_error``, ``top10_eigenvalue_max_rel_error``.

Arrays (``arrays.npz``): keys ``<split>/step_<t>/<name>`` with names ``theta_order``,
``eigenvalues_<kind>``, ``curve_<mask>_<kind>`` (entry k−1 is the overlap at k) and
``curve_chance``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SchemaError", "validate_results"]

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
    if results["schema_version"] != 1:
        raise SchemaError(f"results.schema_version: expected 1, got {results['schema_version']}")
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
