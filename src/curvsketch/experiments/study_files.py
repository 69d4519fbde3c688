"""The files of a study: analysed steps, ``results.json`` and ``arrays.npz``.

Every file is written atomically (:func:`~curvsketch.experiments.run_files.atomic_write`).
``results.json`` is checked against :mod:`curvsketch.experiments.schema` before it is
written (:func:`write_results`: a violation raises and the old file stays); its per-step
entries are :meth:`~curvsketch.experiments.step_records.StepAnalysis.record` and its
``stability`` and ``summary`` are computed here from the typed steps. ``arrays.npz`` holds
:meth:`~curvsketch.experiments.step_records.StepAnalysis.named_arrays` of every step under
``<split>/step_<t>/<name>``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curvsketch.analysis import iou_matrix, subspace_overlap_matrix
from curvsketch.experiments.run_files import atomic_write, notice, read_json
from curvsketch.experiments.schema import validate_results
from curvsketch.experiments.step_records import StepAnalysis

__all__ = [
    "WRITE_FIX",
    "StudyResult",
    "load_step",
    "save_step",
    "stability",
    "summary",
    "write_arrays",
    "write_results",
]

WRITE_FIX = "free space or pass another --out; finished steps are kept and a rerun reuses them"


class StudyResult(dict):
    """The content of ``results.json`` (a dict), with the typed steps and arrays attached.

    Attributes:
        steps: the analysed steps, in the order of ``self["analyses"]``.
        arrays: the content of ``arrays.npz`` (``<split>/step_<t>/<name>`` → array).
        out_dir: the study's folder.
    """

    steps: list[StepAnalysis]
    arrays: dict[str, np.ndarray]
    out_dir: Path


def save_step(folder: Path, key: str, res: StepAnalysis, fingerprint: str) -> None:
    """Write ``<key>.pt`` (every field) then ``<key>.json`` (the record and fingerprint)."""
    blob = res.to_blob()
    atomic_write(folder / f"{key}.pt", lambda p: torch.save(blob, p), WRITE_FIX)
    text = json.dumps({**res.record(), "fingerprint": fingerprint}, indent=1)
    atomic_write(folder / f"{key}.json", lambda p: p.write_text(text), WRITE_FIX)


def load_step(
    folder: Path, key: str, fingerprint: str, step: int, split: str
) -> StepAnalysis | None:
    """The stored analysis ``key`` if it is complete and readable, else None (with a notice)."""
    js, pt = folder / f"{key}.json", folder / f"{key}.pt"
    if not (js.is_file() and pt.is_file()):
        return None
    record = read_json(js, "recomputing it")
    if record is None:
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != fingerprint:
        notice(f"{js} is not the analysis it is named for; recomputing it")
        return None
    if record.get("step") != step or record.get("split") != split:
        notice(f"{js} holds step {record.get('step')!r} ({record.get('split')!r}); recomputing it")
        return None
    try:
        blob = torch.load(pt, weights_only=True)
    except Exception as err:  # a truncated zip, garbage, ...
        notice(f"{pt} is unreadable ({type(err).__name__}); treating it as missing, recomputing it")
        return None
    try:
        res = StepAnalysis.from_blob(blob)
    except ValueError:
        notice(f"{pt} was written by an older curvsketch; recomputing it")
        return None
    except (KeyError, TypeError) as err:
        notice(f"{pt} is damaged ({type(err).__name__}); treating it as missing, recomputing it")
        return None
    if (res.step, res.split) != (step, split):
        notice(f"{pt} holds step {res.step!r} ({res.split!r}); recomputing it")
        return None
    return res


def stability(
    per_split: dict[str, list[StepAnalysis]], stability_ks: Sequence[int]
) -> dict[str, Any]:
    """The ``stability`` entry of ``results.json``: per split, magnitude-mask IoU and
    top-k eigenspace overlap between every pair of analysed steps, for each k."""
    out: dict[str, Any] = {}
    for split, items in per_split.items():
        entry: dict[str, Any] = {
            "steps": [it.step for it in items],
            "mask_iou": {},
            "eigenspace_overlap": {},
        }
        for k in stability_ks:
            if k > min(it.eigen.outer for it in items):
                continue
            masks = [it.overlap.theta_order[:k] for it in items]
            entry["mask_iou"][str(k)] = iou_matrix(masks).tolist()
            for kind in ("exact", "sketched"):
                bases = [it.eigen.bases.get(kind) for it in items]
                if all(b is not None and b.shape[1] >= k for b in bases):
                    # bases were stored in float32: check orthonormality to that precision
                    mat = subspace_overlap_matrix([b.double() for b in bases], k, atol=1e-5)
                    entry["eigenspace_overlap"].setdefault(kind, {})[str(k)] = mat.tolist()
        out[split] = entry
    return out


def summary(per_split: dict[str, list[StepAnalysis]], k: int) -> list[dict[str, Any]]:
    """The ``summary`` rows of ``results.json``: the headline numbers at ``k`` (main_k)."""
    rows = []
    for split, items in per_split.items():
        for it in items:
            ov = it.overlap
            magnitude = ov.at("magnitude", "sketched", k)
            chance = ov.chance_at(k)
            if magnitude is None or chance is None:
                continue
            row = {
                "step": it.step,
                "split": split,
                "k": k,
                "magnitude_sketched": magnitude,
                "magnitude_exact": ov.at("magnitude", "exact", k),
                "random": ov.at("random_mean", "sketched", k),
                "best": ov.at("best", "sketched", k),
                "chance": chance,
                "ratio_to_chance": magnitude / chance,
                "relative_error": it.eigen.error["relative_error"],
                "top10_eigenvalue_max_rel_error": it.eigen.eigenvalue_errors.get(10),
            }
            if row["magnitude_exact"] is not None:
                row["abs_diff_sketched_exact"] = abs(magnitude - row["magnitude_exact"])
            rows.append(row)
    return rows


def write_arrays(path: Path, steps: Sequence[StepAnalysis]) -> dict[str, np.ndarray]:
    """Write ``arrays.npz`` of ``steps``; return its content."""
    arrays = {
        f"{it.split}/step_{it.step}/{name}": arr.numpy()
        for it in steps
        for name, arr in it.named_arrays().items()
    }

    def save(target: Path) -> None:
        with open(target, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    atomic_write(path, save, WRITE_FIX)
    return arrays


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Write ``results.json`` after checking it against the schema.

    Raises:
        SchemaError: ``results`` (as JSON) violates the schema; nothing is written.
        OutputError: the file cannot be written.
    """
    text = json.dumps(results, indent=1)
    validate_results(json.loads(text))  # what a reader of the file will see
    atomic_write(path, lambda p: p.write_text(text), WRITE_FIX)
