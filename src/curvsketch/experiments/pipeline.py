"""The study pipeline: train, analyse the curvature at chosen steps, write results and figures.

``run_study(config, out_dir)`` reproduces one setting of ``docs/paper.md`` §4 end to end:
data and model from the configuration, plain SGD with checkpoints (resumable), then for
every checkpoint step and Hessian split a :func:`~curvsketch.experiments.measure_step.analyse_step`,
the stabilisation matrices across steps, ``results.json``, ``arrays.npz`` and PNG figures.

Nothing measured is lost: each (step, split) is written to ``steps/`` as soon as it is done
(JSON record, arrays, bases), and a second run into the same directory with the same
settings reuses those files instead of recomputing them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from curvsketch.analysis import iou_matrix, subspace_overlap_matrix
from curvsketch.experiments.config import StudyConfig
from curvsketch.experiments.data import Split, balanced_subset, mnist16, sklearn_digits
from curvsketch.experiments.folders import load_torchvision_folder
from curvsketch.experiments.measure_step import StepAnalysis, analyse_step
from curvsketch.experiments.models import build_model, count_parameters
from curvsketch.experiments.training import train

__all__ = ["RESULTS_SCHEMA_VERSION", "StudyResult", "load_study_data", "run_study"]

RESULTS_SCHEMA_VERSION = 1


class StudyResult(dict):
    """The content of ``results.json`` (a dict), with the arrays of ``arrays.npz`` attached."""

    arrays: dict[str, np.ndarray]
    out_dir: Path


def load_study_data(config: StudyConfig) -> tuple[Split, Split, int]:
    """Training and test splits, and the number of classes, for ``config.data``.

    Raises:
        FileNotFoundError: a folder data set is missing (the message says where to put it).
        ValueError: an unknown data set name.
    """
    d = config.data
    if d.name == "mnist16":
        tt = mnist16(d.n_train_per_class, d.n_test_per_class, seed=d.seed)
        return tt.train, tt.test, 10
    if d.name == "digits":
        tt = sklearn_digits(d.n_test_per_class, seed=d.seed)
        return tt.train, tt.test, 10
    if d.name == "synthetic":
        from curvsketch.experiments.data import synthetic_classification

        tr = synthetic_classification(d.num_samples, d.input_shape, d.num_classes, seed=d.seed)
        te = synthetic_classification(
            max(d.num_samples // 4, d.num_classes), d.input_shape, d.num_classes, seed=d.seed + 1
        )
        return tr, te, d.num_classes
    if d.root is None:
        raise ValueError(
            f"data.name = {d.name!r} reads a local folder: set data.root (or pass --data-root) "
            "to the folder that holds it; nothing is downloaded"
        )
    tr = load_torchvision_folder(d.name, d.root, train=True)
    te = load_torchvision_folder(d.name, d.root, train=False)
    if not isinstance(tr, Split) or not isinstance(te, Split):
        raise ValueError(f"data.name = {d.name!r}: the study needs an in-memory data set")
    classes = int(tr.targets.max()) + 1
    return tr, te, classes


def _fingerprint(config: StudyConfig) -> str:
    """Hash of every setting that changes a (step, split) analysis (not the step list)."""
    parts = asdict(config)
    parts["hessian"] = {k: v for k, v in parts["hessian"].items() if k != "steps"}
    parts.pop("name")
    parts.pop("sweep")
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _save_step(folder: Path, key: str, res: StepAnalysis, fingerprint: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(
        folder / f"{key}.pt", lambda p: torch.save({"arrays": res.arrays, "bases": res.bases}, p)
    )
    record = {**res.record, "fingerprint": fingerprint}
    _atomic_write(folder / f"{key}.json", lambda p: p.write_text(json.dumps(record, indent=1)))


def _load_step(folder: Path, key: str, fingerprint: str) -> StepAnalysis | None:
    js, pt = folder / f"{key}.json", folder / f"{key}.pt"
    if not (js.is_file() and pt.is_file()):
        return None
    record = json.loads(js.read_text())
    if record.pop("fingerprint", None) != fingerprint:
        return None
    blob = torch.load(pt, weights_only=True)
    return StepAnalysis(record, blob["arrays"], blob["bases"])


def _stability(config: StudyConfig, per_split: dict[str, list[StepAnalysis]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split, items in per_split.items():
        steps = [it.record["step"] for it in items]
        entry: dict[str, Any] = {"steps": steps, "mask_iou": {}, "eigenspace_overlap": {}}
        for k in config.analysis.stability_ks:
            if k > min(it.record["outer"] for it in items):
                continue
            masks = [it.arrays["theta_order"][:k] for it in items]
            entry["mask_iou"][str(k)] = iou_matrix(masks).tolist()
            for kind in ("exact", "sketched"):
                bases = [it.bases.get(kind) for it in items]
                if all(b is not None and b.shape[1] >= k for b in bases):
                    # bases were stored in float32: check orthonormality to that precision
                    mat = subspace_overlap_matrix([b.double() for b in bases], k, atol=1e-5)
                    entry["eigenspace_overlap"].setdefault(kind, {})[str(k)] = mat.tolist()
        out[split] = entry
    return out


def _summary(config: StudyConfig, per_split: dict[str, list[StepAnalysis]]) -> list[dict[str, Any]]:
    k = str(config.analysis.main_k)
    rows = []
    for split, items in per_split.items():
        for it in items:
            r, ov = it.record, it.record["overlap"]
            if k not in ov["magnitude"]["sketched"]:
                continue
            chance = ov["chance"]["any"][k]
            row = {
                "step": r["step"],
                "split": split,
                "k": int(k),
                "magnitude_sketched": ov["magnitude"]["sketched"][k],
                "magnitude_exact": ov["magnitude"].get("exact", {}).get(k),
                "random": ov["random_mean"]["sketched"][k],
                "best": ov["best"]["sketched"][k],
                "chance": chance,
                "ratio_to_chance": ov["magnitude"]["sketched"][k] / chance,
                "relative_error": r["error"]["relative_error"],
                "top10_eigenvalue_max_rel_error": r.get("top10_eigenvalue_max_rel_error"),
            }
            if row["magnitude_exact"] is not None:
                row["abs_diff_sketched_exact"] = abs(
                    row["magnitude_sketched"] - row["magnitude_exact"]
                )
            rows.append(row)
    return rows


def run_study(
    config: StudyConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    figures: bool = True,
) -> StudyResult:
    """Run (or resume) a whole study and write its outputs into ``out_dir``.

    Args:
        config: the validated study configuration.
        out_dir: output directory (created). Holds ``results.json``, ``arrays.npz``,
            ``figures/*.png``, ``checkpoints/`` and ``steps/`` (per-step files reused by a
            later run with the same settings).
        progress: progress lines on stderr for training and products.
        figures: draw the PNG figures.

    Returns:
        The results (the dict written to ``results.json``) with ``.arrays`` attached.
    """
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_split, test_split, _ = load_study_data(config)
    model = build_model(config.model.name, seed=config.model.seed, **config.model.kwargs)
    D = count_parameters(model)
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    log = train(
        model,
        (train_split.inputs, train_split.targets),
        steps=config.train.steps,
        lr=config.train.lr,
        batch_size=config.train.batch_size,
        seed=config.train.seed,
        checkpoint_steps=config.hessian.steps,
        eval_data=(test_split.inputs, test_split.targets),
        progress=progress,
        checkpoint_dir=out / "checkpoints",
    )
    train_seconds = time.perf_counter() - t0
    hess_data = {}
    for split, data in (("train", train_split), ("test", test_split)):
        if split in config.hessian.splits:
            idx = balanced_subset(
                data.targets, config.data.hessian_per_class, seed=config.data.seed
            )
            hess_data[split] = (data.inputs[idx], data.targets[idx])
    fingerprint = _fingerprint(config)
    per_split: dict[str, list[StepAnalysis]] = {s: [] for s in hess_data}
    reused = 0
    model.eval()
    for step in sorted(set(config.hessian.steps)):
        model.load_state_dict(log.state_dict(step))
        for split, data in hess_data.items():
            key = f"step_{step:07d}_{split}"
            res = _load_step(out / "steps", key, fingerprint)
            if res is None:
                if progress:
                    print(
                        f"analysing step {step} ({split}, {data[0].shape[0]} samples, D = {D:,})",
                        flush=True,
                    )
                res = analyse_step(
                    model, loss_fn, data, config, step=step, split=split, progress=progress
                )
                _save_step(out / "steps", key, res, fingerprint)
            else:
                reused += 1
            per_split[split].append(res)
    results = StudyResult(
        schema_version=RESULTS_SCHEMA_VERSION,
        name=config.name,
        settings=config.to_dict(),
        model={"name": config.model.name, "num_params": D},
        training={
            "steps": log.steps,
            "loss": log.losses,
            "eval_steps": log.eval_steps,
            "eval_loss": log.eval_losses,
            "eval_accuracy": log.eval_accuracies,
            "seconds": train_seconds,
        },
        analyses=[it.record for items in per_split.values() for it in items],
        stability=_stability(config, per_split),
        summary=_summary(config, per_split),
        reused_analyses=reused,
        seconds=time.perf_counter() - t_start,
    )
    arrays = {
        f"{it.record['split']}/step_{it.record['step']}/{name}": arr.numpy()
        for items in per_split.values()
        for it in items
        for name, arr in it.arrays.items()
    }
    np.savez_compressed(out / "arrays.npz", **arrays)
    results.arrays = arrays
    results.out_dir = out
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if figures:
        from curvsketch.experiments.figures import draw_all

        results["figures"] = [str(p.relative_to(out)) for p in draw_all(results, out / "figures")]
        (out / "results.json").write_text(json.dumps(results, indent=1))
    return results
