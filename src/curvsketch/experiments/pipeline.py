"""The study pipeline: train, analyse the curvature at chosen steps, write results and figures.

``run_study(config, out_dir)`` reproduces one setting of ``docs/paper.md`` §4 end to end:
data and model from the configuration, plain SGD with checkpoints (resumable), then for
every checkpoint step and Hessian split a :func:`~curvsketch.experiments.measure_step.analyse_step`
(a typed :class:`~curvsketch.experiments.step_records.StepAnalysis`), the stabilisation
matrices across steps, ``results.json`` (validated against
:mod:`curvsketch.experiments.schema` before it is written), ``arrays.npz`` and PNG
figures (:mod:`curvsketch.experiments.study_files`, :mod:`curvsketch.experiments.figures`).

Nothing measured is lost: each (step, split) is written to ``steps/`` as soon as it is done
(JSON record, arrays, bases), and a second run into the same directory reuses what is
still valid:

- ``checkpoints/`` are reused only by a run whose training is identical (every setting
  that changes the weights: ``[model]``, ``[data]`` but its ``root``, ``train.lr``,
  ``train.batch_size``, ``train.seed``, and fingerprints of θ_0, the training data and
  the loss; see :mod:`curvsketch.experiments.checkpoints`). A folder trained otherwise
  is refused with an error naming every differing setting: pass another ``--out`` or
  delete the folder. ``train.steps`` may grow (training continues) or shrink.
- ``steps/step_<t>_<split>_<fingerprint>.json|.pt`` are keyed by a fingerprint of the
  weights at step t, the Hessian samples, and every setting but the run's name, the step
  and split lists, ``train.steps``, ``data.root`` and ``[sweep]``: an analysis with
  other settings goes to its own files beside the old ones (nothing is overwritten).
- A corrupt file (truncated JSON, garbage) is treated as missing and recomputed, with a
  one-line notice on stderr.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from curvsketch.experiments.checkpoints import CheckpointMismatchError, describe_changes
from curvsketch.experiments.config import StudyConfig
from curvsketch.experiments.data import Split, mnist16, sklearn_digits
from curvsketch.experiments.folders import load_torchvision_folder
from curvsketch.experiments.measure_step import analyse_step
from curvsketch.experiments.models import build_model, count_parameters
from curvsketch.experiments.preflight import check_study
from curvsketch.experiments.run_files import (
    OutputError,
    describe_os_error,
    digest,
    prepare_dir,
)
from curvsketch.experiments.schema import SCHEMA_VERSION
from curvsketch.experiments.step_records import StepAnalysis
from curvsketch.experiments.study_files import (
    WRITE_FIX,
    StudyResult,
    load_step,
    save_step,
    stability,
    summary,
    write_arrays,
    write_results,
)
from curvsketch.experiments.study_operator import hessian_samples
from curvsketch.experiments.training import train

__all__ = [
    "StudyResult",
    "load_study_data",
    "run_study",
    "train_identity",
]


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


OUT_FIX = "pass another --out (out_dir)"
_TRAIN_KEYS = {"lr": "train.lr", "batch_size": "train.batch_size", "seed": "train.seed"}


def train_identity(config: StudyConfig) -> dict[str, Any]:
    """The configuration behind the weights, stored with the checkpoints and compared.

    Args:
        config: the study.

    Returns:
        ``{"model.<key>": ..., "data.<key>": ...}`` for every model and data setting but
        ``data.root`` (the data's content is fingerprinted instead).
    """
    data = {f"data.{k}": v for k, v in asdict(config.data).items() if k != "root"}
    model = {f"model.{k}": v for k, v in asdict(config.model).items()}
    return {**model, **data}


def _fingerprint(config: StudyConfig, weights: str, samples: str) -> str:
    """Hash of everything a (step, split) analysis depends on.

    Args:
        config: the study; all of it counts but its name, ``[sweep]``, the step and split
            lists, ``train.steps`` and ``data.root`` (the weights and samples stand for them).
        weights: digest of the state dict at that step.
        samples: digest of the Hessian samples of that split.
    """
    parts = asdict(config)
    parts["hessian"] = {k: v for k, v in parts["hessian"].items() if k not in ("steps", "splits")}
    parts["train"] = {k: v for k, v in parts["train"].items() if k != "steps"}
    parts["data"] = {k: v for k, v in parts["data"].items() if k != "root"}
    if parts["sketch"].get("which") == "LM":  # the default: steps of older runs stay valid
        del parts["sketch"]["which"]
    parts.pop("name")
    parts.pop("sweep")
    parts["weights"], parts["samples"] = weights, samples
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _train_or_refuse(model: nn.Module, config: StudyConfig, out: Path, **kwargs: Any) -> Any:
    try:
        return train(
            model, identity=train_identity(config), checkpoint_dir=out / "checkpoints", **kwargs
        )
    except CheckpointMismatchError as err:
        named = {_TRAIN_KEYS.get(k, k): v for k, v in err.changes.items()}
        # configuration keys first, then the fingerprints (architecture, θ_0, data, loss)
        changes = dict(sorted(named.items(), key=lambda kv: "." not in kv[0]))
        raise CheckpointMismatchError(
            err.directory,
            changes,
            (
                f"--out {out} holds a study trained with other settings "
                f"({describe_changes(changes)}); its checkpoints cannot be reused: pass another "
                f"--out, or delete {out / 'checkpoints'} to retrain there"
            ),
        ) from None


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
        The results (the dict written to ``results.json``) with the typed steps
        (``.steps``) and the arrays of ``arrays.npz`` (``.arrays``) attached.

    Raises:
        CheckpointMismatchError: ``out_dir`` holds checkpoints trained with other settings
            (a ``ValueError`` naming each differing setting; nothing is changed there).
        OutputError: ``out_dir`` is a file or cannot be written, or the disk is full (a
            ``ValueError`` naming the path; finished steps are kept and reused next time).
        SchemaError: the results do not follow :mod:`curvsketch.experiments.schema`
            (a bug; ``results.json`` is then not replaced).
        TrainingDivergedError: the training loss became non-finite or exploded (a
            ``ValueError`` naming the step and lr).
        FileNotFoundError, ValueError: missing data or a bad setting.
    """
    t_start = time.perf_counter()
    out = prepare_dir(out_dir, OUT_FIX)
    train_split, test_split, _ = load_study_data(config)
    model = build_model(config.model.name, seed=config.model.seed, **config.model.kwargs)
    check_study(config, model, inputs=train_split.inputs)
    D = count_parameters(model)
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    log = _train_or_refuse(
        model,
        config,
        out,
        train_data=(train_split.inputs, train_split.targets),
        steps=config.train.steps,
        lr=config.train.lr,
        batch_size=config.train.batch_size,
        seed=config.train.seed,
        checkpoint_steps=config.hessian.steps,
        eval_data=(test_split.inputs, test_split.targets),
        progress=progress,
    )
    train_seconds = time.perf_counter() - t0
    hess_data = {
        split: hessian_samples(config, data)
        for split, data in (("train", train_split), ("test", test_split))
        if split in config.hessian.splits
    }
    samples = {split: digest(list(data)) for split, data in hess_data.items()}
    per_split: dict[str, list[StepAnalysis]] = {s: [] for s in hess_data}
    reused = 0
    model.eval()
    steps_dir = prepare_dir(out / "steps", OUT_FIX)
    for step in sorted(set(config.hessian.steps)):
        state = log.state_dict(step)
        model.load_state_dict(state)
        weights = digest(state)
        for split, data in hess_data.items():
            fingerprint = _fingerprint(config, weights, samples[split])
            key = f"step_{step:07d}_{split}_{fingerprint}"
            res = load_step(steps_dir, key, fingerprint, step, split)
            if res is None:
                if progress:
                    print(
                        f"analysing step {step} ({split}, {data[0].shape[0]} samples, D = {D:,})",
                        flush=True,
                    )
                res = analyse_step(
                    config, model, data, step=step, split=split, loss_fn=loss_fn, progress=progress
                )
                save_step(steps_dir, key, res, fingerprint)
            else:
                reused += 1
            per_split[split].append(res)
    steps = [it for items in per_split.values() for it in items]
    results = StudyResult(
        schema_version=SCHEMA_VERSION,
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
        analyses=[it.record() for it in steps],
        stability=stability(per_split, config.analysis.stability_ks),
        summary=summary(per_split, config.analysis.main_k),
        reused_analyses=reused,
        seconds=time.perf_counter() - t_start,
    )
    results.steps = steps
    results.arrays = write_arrays(out / "arrays.npz", steps)
    results.out_dir = out
    write_results(out / "results.json", results)
    if figures:
        from curvsketch.experiments.figures import draw_all

        try:
            drawn = draw_all(results, out / "figures")
        except OSError as err:
            raise OutputError(
                describe_os_error(err, out / "figures", WRITE_FIX)
                + "; results.json and arrays.npz are written"
            ) from err
        results["figures"] = [str(p.relative_to(out)) for p in drawn]
        write_results(out / "results.json", results)
    return results
