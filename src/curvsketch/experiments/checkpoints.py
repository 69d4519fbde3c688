"""The files of a checkpointed training run, and when a later run may reuse them.

A run trained into a folder holds ``train_log.json`` (its settings and logged losses)
and one ``step_XXXXXXXX.pt`` per checkpoint, a dict ``{"step", "model", "run"}``: the
step, the state dict, and the run's identity (a digest of its settings). The settings
are everything that changes the weights: lr, batch size and seed, the number of training
samples and parameters, and fingerprints of the architecture (``repr`` of the model), of
the initial state θ_0, of the training data and of the loss (its ``repr`` and the loss
of θ_0 on the first batch, which also catches a changed activation inside ``forward``
or a loss option ``repr`` does not show), plus what the caller adds (e.g. the study's
model and data configuration).

A later call reuses the folder only when every setting is equal (the probe loss to a
relative 1e-4, for GPU rounding); otherwise it refuses with :class:`CheckpointMismatchError`,
naming every differing setting. A checkpoint file is used only if it loads, names its
own step and carries this run's identity; others are treated as missing (recomputed
from an earlier one) with a one-line notice, as is a corrupt ``train_log.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from curvsketch.experiments.run_files import digest, notice, read_json

__all__ = [
    "LOG_FILE",
    "CheckpointMismatchError",
    "TrainLog",
    "data_digest",
    "load_checkpoint",
    "probe_loss",
    "run_identity",
    "text_digest",
]

StateDict = dict[str, Tensor]
LOG_FILE = "train_log.json"
PROBE_KEY = "probe_loss"
PROBE_RTOL = 1e-4


def data_digest(data: Any, inputs: Tensor | None, targets: Tensor | None) -> str:
    """Fingerprint of training data: all of it for tensors, 8 evenly spread samples of a dataset.

    Args:
        data: the training data as given to ``train``.
        inputs: its inputs tensor (on the device), or None for a dataset.
        targets: its targets tensor, or None for a dataset.
    """
    if inputs is not None and targets is not None:
        return digest([inputs, targets])
    n = len(data)  # type: ignore[arg-type]
    picks = sorted({(i * (n - 1)) // 7 for i in range(8)}) if n else []
    parts = [torch.as_tensor(v) for i in picks for v in data[i]]  # type: ignore[index]
    head = hashlib.sha256(f"{type(data).__qualname__}|{n}|{digest(parts)}".encode())
    return head.hexdigest()[:16]


@torch.no_grad()
def probe_loss(
    model: nn.Module,
    batch: tuple[Tensor, Tensor],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
) -> float:
    """Loss of ``model`` in eval mode on ``batch``: no dropout, no batch-norm update.

    Args:
        model: the network.
        batch: ``(inputs, targets)`` on the model's device.
        loss_fn: mean-reduced loss.
    """
    was_training = model.training
    model.eval()
    try:
        return float(loss_fn(model(batch[0]), batch[1]))
    finally:
        model.train(was_training)


def text_digest(text: str) -> str:
    """SHA-256 (hex, 16 digits) of a text."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CheckpointMismatchError(ValueError):
    """A checkpoint folder holds a run with other settings.

    Attributes:
        directory: the folder.
        changes: setting -> (saved value, value now), for every differing setting.
    """

    def __init__(
        self, directory: Path, changes: dict[str, tuple[Any, Any]], message: str | None = None
    ) -> None:
        self.directory, self.changes = directory, changes
        super().__init__(
            message
            or f"checkpoint_dir {directory} holds a run with other settings "
            f"({describe_changes(changes)}); pass another checkpoint_dir or delete this one"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    """``"key: saved A vs now B, ..."``, with a hint for settings an older version did not save."""
    text = ", ".join(f"{k}: saved {_short(a)} vs now {_short(b)}" for k, (a, b) in changes.items())
    if any(a is None for a, _ in changes.values()):
        text += "; a value saved as None was not recorded by the curvsketch that wrote it"
    return text


def run_identity(settings: dict[str, Any]) -> str:
    """Digest (16 hex digits) of a run's settings, stored in each of its checkpoints."""
    exact = {k: v for k, v in settings.items() if k != PROBE_KEY}
    return hashlib.sha256(json.dumps(exact, sort_keys=True, default=str).encode()).hexdigest()[:16]


def setting_changes(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every setting whose saved value differs from the current one (saved, now)."""
    changes = {}
    for key in [*now, *(k for k in saved if k not in now)]:
        old, new = saved.get(key), now.get(key)
        if key == PROBE_KEY and isinstance(old, float) and isinstance(new, float):
            same = math.isclose(old, new, rel_tol=PROBE_RTOL, abs_tol=1e-12) or old == new
        else:
            same = old == new
        if not same:
            changes[key] = (old, new)
    return changes


def checkpoint_path(directory: Path, step: int) -> Path:
    """The file of the checkpoint at ``step``."""
    return directory / f"step_{step:08d}.pt"


def saved_checkpoints(directory: Path) -> dict[int, Path]:
    """Step -> file of every ``step_XXXXXXXX.pt`` in ``directory`` (by name, unchecked)."""
    found = {}
    for path in directory.glob("step_*.pt"):
        stem = path.stem.removeprefix("step_")
        if stem.isdigit():
            found[int(stem)] = path
    return found


def load_checkpoint(
    path: str | Path, step: int | None = None, map_location: str | torch.device = "cpu"
) -> StateDict:
    """The state dict in a checkpoint file that ``train`` wrote, or in a plain state dict file.

    Args:
        path: ``step_XXXXXXXX.pt`` (``{"step", "model", ...}``) or a ``torch.save``-d state dict.
        step: if given, the step the file must claim.
        map_location: device of the tensors.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is unreadable, holds no state dict, or claims another step.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} not found"
            + ("; it is a folder: pass one of its step_XXXXXXXX.pt files" if path.is_dir() else "")
        )
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, pickle errors, EOFError, ...
        raise ValueError(
            f"checkpoint {path} is unreadable ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no details'}); "
            "it is corrupt or not a torch.save file"
        ) from err
    if isinstance(blob, dict) and "model" in blob and isinstance(blob["model"], dict):
        if step is not None and blob.get("step") != step:
            raise ValueError(
                f"checkpoint {path} claims step {blob.get('step')!r}, not step {step}; "
                "it was copied or renamed: delete it and rerun to recompute it"
            )
        state = blob["model"]
    else:
        state = blob
    if not (isinstance(state, dict) and all(isinstance(v, Tensor) for v in state.values())):
        raise ValueError(f"checkpoint {path} holds no state dict (name -> tensor)")
    return state


def _checkpoint_problem(path: Path, step: int, run: str) -> str | None:
    """Why the checkpoint file cannot serve as ``step`` of run ``run`` (None if it can)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        return f"unreadable ({type(err).__name__})"
    if not (isinstance(blob, dict) and isinstance(blob.get("model"), dict)):
        return "not a checkpoint of train()"
    if blob.get("step") != step:
        return f"it claims step {blob.get('step')!r}"
    if blob.get("run") != run:
        return f"it belongs to another run ({blob.get('run')!r}, this run is {run!r})"
    return None


@dataclass
class TrainLog:
    """What a training run recorded.

    Attributes:
        steps: Step t of every logged training-batch loss (0, 1, ..., steps - 1).
        losses: Training-batch loss of θ_t on the batch of step t.
        accuracies: Training-batch accuracy of θ_t on that batch.
        checkpoints: Step -> state dict (CPU copy), or -> file path when training into a
            ``checkpoint_dir``; use :meth:`state_dict` to get a state dict either way.
        eval_steps: Checkpoint steps at which ``eval_data`` was evaluated.
        eval_losses: Mean loss over all of ``eval_data`` at those steps.
        eval_accuracies: Accuracy over all of ``eval_data`` at those steps.
        seconds: Wall time of the call that returned this log.
        settings: What identifies the run (see the module docstring): lr, batch_size,
            seed, n_train, num_parameters, the architecture, initial-state, data and loss
            fingerprints, the probe loss, and any ``identity`` entries of the caller.
    """

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    checkpoints: dict[int, StateDict | Path] = field(default_factory=dict)
    eval_steps: list[int] = field(default_factory=list)
    eval_losses: list[float] = field(default_factory=list)
    eval_accuracies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def state_dict(self, step: int, map_location: str | torch.device = "cpu") -> StateDict:
        """The model state at checkpoint ``step`` (loaded from disk if it was saved there).

        Raises:
            KeyError: no checkpoint at ``step``.
            ValueError: the file is unreadable or claims another step.
        """
        if step not in self.checkpoints:
            raise KeyError(f"no checkpoint at step {step}; checkpoints: {sorted(self.checkpoints)}")
        entry = self.checkpoints[step]
        if isinstance(entry, Path):
            return load_checkpoint(entry, step, map_location)
        return entry

    def until(self, step: int) -> TrainLog:
        """This log cut back to what was known at checkpoint ``step``."""
        train = [i for i, t in enumerate(self.steps) if t < step]
        held_out = [i for i, t in enumerate(self.eval_steps) if t <= step]
        return TrainLog(
            steps=[self.steps[i] for i in train],
            losses=[self.losses[i] for i in train],
            accuracies=[self.accuracies[i] for i in train],
            checkpoints={t: c for t, c in self.checkpoints.items() if t <= step},
            eval_steps=[self.eval_steps[i] for i in held_out],
            eval_losses=[self.eval_losses[i] for i in held_out],
            eval_accuracies=[self.eval_accuracies[i] for i in held_out],
            settings=dict(self.settings),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON content of ``train_log.json`` (checkpoints are the files beside it)."""
        names = ("steps", "losses", "accuracies", "eval_steps", "eval_losses", "eval_accuracies")
        return {"settings": self.settings, **{k: getattr(self, k) for k in names}}

    @classmethod
    def _from_json(cls, raw: Any, path: Path) -> TrainLog:
        names = ("steps", "losses", "accuracies", "eval_steps", "eval_losses", "eval_accuracies")
        if not (isinstance(raw, dict) and isinstance(raw.get("settings"), dict)):
            raise ValueError(f"{path} is not a training log (no 'settings')")
        if not all(isinstance(raw.get(k), list) for k in names):
            raise ValueError(f"{path} is not a training log (missing lists of {names})")
        return cls(settings=raw["settings"], **{k: raw[k] for k in names})

    @classmethod
    def load(cls, checkpoint_dir: str | Path) -> TrainLog:
        """Read the log of a run trained into ``checkpoint_dir`` (checkpoints as paths).

        Raises:
            FileNotFoundError: no ``train_log.json`` there.
            ValueError: the log is corrupt.
        """
        directory = Path(checkpoint_dir)
        path = directory / LOG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {directory} holds no training run")
        try:
            raw = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{path} is corrupt ({err}); delete it and rerun the training"
            ) from err
        log = cls._from_json(raw, path)
        log.checkpoints = dict(sorted(saved_checkpoints(directory).items()))
        return log


def resume_point(
    directory: Path, settings: dict[str, Any], wanted: set[int], steps: int
) -> tuple[int, TrainLog] | None:
    """Where a run with ``settings`` can resume in ``directory``, and the log up to there.

    Returns ``None`` for a fresh start: no log (or a corrupt one, with a notice), or no
    usable checkpoint at or before the first missing one.

    Raises:
        CheckpointMismatchError: the folder holds a run with other settings.
    """
    path = directory / LOG_FILE
    raw = read_json(path, "training from step 0")
    if raw is None:
        return None
    try:
        log = TrainLog._from_json(raw, path)
    except ValueError as err:
        notice(f"{err}; treating it as missing and training from step 0")
        return None
    changes = setting_changes(log.settings, settings)
    if changes:
        raise CheckpointMismatchError(directory, changes)
    run = run_identity(settings)
    usable = {}
    for t, file in sorted(saved_checkpoints(directory).items()):
        if t > steps:
            continue
        problem = _checkpoint_problem(file, t, run)
        if problem is None:
            usable[t] = file
        else:
            notice(f"{file}: {problem}; treating it as missing and recomputing it")
    missing = wanted - set(usable)
    limit = min(missing) if missing else steps
    start = max((t for t in usable if t <= limit), default=None)
    if start is None:
        return None
    log.checkpoints = usable
    log = log.until(start)
    if len(log.steps) != start or log.steps != list(range(start)):
        notice(f"{path} does not log every step before {start}; training from step 0")
        return None
    return start, log
