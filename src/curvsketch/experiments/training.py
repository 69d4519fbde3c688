"""Plain SGD with a constant learning rate, seeded, checkpointed and resumable.

The paper trains every net with plain SGD (no momentum, no weight decay), a constant
learning rate and mean cross-entropy (``docs/paper.md`` §4), and computes Hessians at
chosen steps. Here "step t" always names the parameters θ_t after t updates: step 0 is
the initial model, the training loss logged at step t is the loss of θ_t on the t-th
batch (the one whose gradient gives θ_{t+1}).

Everything random is a function of ``(seed, step)``: the batch of step t is a slice of a
permutation drawn from ``(seed, epoch)``, and the global RNG (dropout) is re-seeded from
``(seed, step)`` before every step (:mod:`curvsketch.experiments.batch_order`). A run
resumed from a checkpoint is therefore identical to an uninterrupted one: bit for bit on
CPU; on CUDA only with ``torch.use_deterministic_algorithms(True)`` (and
``CUBLAS_WORKSPACE_CONFIG=:4096:8``), since cuDNN's default convolution kernels differ
between reruns (checked on an H200).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from curvsketch.experiments.batch_order import batch_indices, batch_schedule, mix_seed, seed_step
from curvsketch.experiments.checkpoints import (
    LOG_FILE,
    PROBE_KEY,
    CheckpointMismatchError,
    TrainLog,
    checkpoint_path,
    data_digest,
    probe_loss,
    resume_point,
    run_identity,
    text_digest,
)
from curvsketch.experiments.run_files import atomic_write, digest, prepare_dir
from curvsketch.progress import Progress

__all__ = [
    "LOG_FILE",
    "CheckpointMismatchError",
    "TrainLog",
    "TrainingDivergedError",
    "batch_indices",
    "evaluate",
    "train",
]

TrainData = tuple[Tensor, Tensor] | Dataset[Any]
StateDict = dict[str, Tensor]
WRITE_FIX = "free space or pass another folder; finished checkpoints are kept and a rerun resumes"


class TrainingDivergedError(FloatingPointError, ValueError):
    """The training loss became non-finite or exploded; the message names the step and lr."""


def _eval_batches(
    data: TrainData, batch_size: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    if isinstance(data, tuple):
        inputs, targets = data
        for start in range(0, inputs.shape[0], batch_size):
            yield (
                inputs[start : start + batch_size].to(device),
                targets[start : start + batch_size].to(device),
            )
    else:
        for x, y in DataLoader(data, batch_size=batch_size):
            yield x.to(device), y.to(device)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: TrainData,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    batch_size: int = 1000,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` in eval mode over all of ``data``.

    Args:
        model: Classifier returning logits.
        data: ``(inputs, targets)`` tensors or a map-style dataset of ``(input, label)``.
        loss_fn: Mean-reduced loss (default cross-entropy).
        batch_size: Samples per forward pass (memory only; the result does not depend on it).
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss = total_correct = 0.0
    count = 0
    for x, y in _eval_batches(data, batch_size, device):
        out = model(x)
        total_loss += float(loss_fn(out, y)) * y.shape[0]
        total_correct += float((out.argmax(dim=1) == y).sum())
        count += y.shape[0]
    model.train(was_training)
    return total_loss / max(count, 1), total_correct / max(count, 1)


def _check_arguments(
    n: int, steps: int, lr: float, batch_size: int, checkpoint_steps: Sequence[int], log_every: int
) -> None:
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    if not 1 <= batch_size <= n:
        raise ValueError(
            f"batch_size must be in [1, {n}] (the number of training samples), got {batch_size}"
        )
    bad = [t for t in checkpoint_steps if not 0 <= t <= steps]
    if bad:
        raise ValueError(f"checkpoint_steps must lie in [0, steps={steps}], got {bad}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")


def train(
    model: nn.Module,
    train_data: TrainData,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    checkpoint_steps: Iterable[int] = (),
    eval_data: TrainData | None = None,
    log_every: int = 50,
    callback: Callable[[int, nn.Module, TrainLog], None] | None = None,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    eval_batch_size: int = 1000,
    num_workers: int = 0,
    identity: Mapping[str, Any] | None = None,
    max_loss_ratio: float | None = 100.0,
) -> TrainLog:
    """Train ``model`` in place with plain constant-lr SGD on mean cross-entropy.

    Checkpoints are taken at ``checkpoint_steps`` and always at steps 0 and ``steps``; at
    each, ``eval_data`` (if given) is evaluated in full. With ``checkpoint_dir`` they are
    saved there (``step_XXXXXXXX.pt`` plus ``train_log.json``, written atomically), and a
    later call with the same directory and settings resumes from the latest useful
    checkpoint instead of recomputing: a finished run returns at once, a longer run
    continues, a newly requested earlier checkpoint is recomputed from the one before it.
    "The same settings" covers everything that changes the weights (see
    :mod:`curvsketch.experiments.checkpoints`): lr, batch size, seed, the architecture,
    the initial state (so pass the *untrained* model when resuming), the training data,
    the loss, and ``identity``. A folder holding another run is refused, never mixed in.
    The paper's MNIST setting is ``lr=0.3, batch_size=500``.

    Args:
        model: The network at θ_0; it is left at θ_steps (in its original train/eval mode).
        train_data: ``(inputs, targets)`` tensors (moved to the model's device once) or a
            map-style dataset (loaded through a DataLoader with ``num_workers``).
        steps: Number of SGD updates.
        lr: Constant learning rate.
        batch_size: Samples per update.
        seed: Seed of the batch order and of the per-step RNG (dropout).
        checkpoint_steps: Steps in [0, steps] at which to record the parameters.
        eval_data: Optional held-out data evaluated at every checkpoint.
        log_every: Steps between progress updates on stderr (lines are also throttled
            in time, see :class:`curvsketch.progress.Progress`).
        callback: Called as ``callback(t, model, log)`` at every state θ_t produced by this
            call (t = 0 on a fresh start; not for a checkpoint it resumed from).
        progress: Print progress (steps done/total, loss, rate, ETA) to stderr.
        checkpoint_dir: Save checkpoints there, and resume from it, instead of memory.
        loss_fn: Mean-reduced loss (default ``nn.CrossEntropyLoss()``).
        eval_batch_size: Batch size of the evaluations.
        num_workers: DataLoader workers when ``train_data`` is a dataset.
        identity: Further JSON-able settings that identify the run (e.g. the configuration
            that built the model and data); stored in the log and compared on resume.
        max_loss_ratio: The run counts as diverged when a training-batch loss exceeds this
            multiple of the loss at step 0 (``None``: only non-finite losses count).

    Returns:
        The :class:`TrainLog`, including anything loaded from ``checkpoint_dir``.

    Raises:
        ValueError: a bad argument.
        CheckpointMismatchError: ``checkpoint_dir`` holds a run with other settings (a
            ``ValueError`` naming each differing setting).
        OutputError: ``checkpoint_dir`` cannot be written (a ``ValueError`` naming the path).
        TrainingDivergedError: the loss or the parameters became non-finite, or the loss
            exploded (a ``FloatingPointError`` and ``ValueError`` naming the step and lr).
    """
    started = time.perf_counter()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    device = next(model.parameters()).device
    inputs = targets = None
    if isinstance(train_data, tuple):
        inputs, targets = (v.to(device) for v in train_data)
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(
                f"train_data has {inputs.shape[0]} inputs but {targets.shape[0]} targets"
            )
        n = inputs.shape[0]
    else:
        n = len(train_data)  # type: ignore[arg-type]
    checkpoint_steps = sorted({int(t) for t in checkpoint_steps})
    _check_arguments(n, steps, lr, batch_size, checkpoint_steps, log_every)
    if max_loss_ratio is not None and not max_loss_ratio > 1:
        raise ValueError(f"max_loss_ratio must be > 1 or None, got {max_loss_ratio}")
    wanted = {0, steps, *checkpoint_steps}

    def fetch(indices: Tensor) -> tuple[Tensor, Tensor]:
        if inputs is not None and targets is not None:
            i = indices.to(device)
            return inputs.index_select(0, i), targets.index_select(0, i)  # faster than [i]
        x, y = next(iter(DataLoader(train_data, batch_sampler=[indices.tolist()])))
        return x.to(device), y.to(device)

    settings: dict[str, Any] = {
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "n_train": n,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    if checkpoint_dir is not None:
        settings.update(
            architecture=text_digest(repr(model)),
            initial_state=digest(model.state_dict()),
            train_data=data_digest(train_data, inputs, targets),
            loss=repr(loss_fn),
            **{PROBE_KEY: probe_loss(model, fetch(batch_indices(n, batch_size, seed, 0)), loss_fn)},
        )
        for key, value in (identity or {}).items():
            if key in settings:
                raise ValueError(f"identity key {key!r} clashes with a setting of train()")
            settings[key] = value
        settings = json.loads(json.dumps(settings, default=str))  # as read back from the log
    log = TrainLog(settings=settings)
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None

    start, resumed = 0, False
    run = run_identity(settings)
    if directory is not None:
        prepare_dir(directory, "pass another checkpoint_dir")
        found = resume_point(directory, settings, wanted, steps)
        if found is not None:
            start, log = found
            resumed = True
            log.settings = settings
            model.load_state_dict(log.state_dict(start, map_location=device))

    def at_state(t: int) -> None:
        if t in wanted:
            if directory is not None:
                path = checkpoint_path(directory, t)
                state = {"step": t, "model": model.state_dict(), "run": run}
                atomic_write(path, lambda tmp: torch.save(state, tmp), WRITE_FIX)
                log.checkpoints[t] = path
            else:
                log.checkpoints[t] = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
            if eval_data is not None:
                loss, acc = evaluate(model, eval_data, loss_fn, eval_batch_size)
                log.eval_steps.append(t)
                log.eval_losses.append(loss)
                log.eval_accuracies.append(acc)
            if directory is not None:
                text = json.dumps(log.to_json())
                atomic_write(directory / LOG_FILE, lambda tmp: tmp.write_text(text), WRITE_FIX)
        if callback is not None:
            callback(t, model, log)

    def diverged(t: int, what: str) -> TrainingDivergedError:
        fresh = ""
        if directory is not None:  # its checkpoints belong to this lr: another lr is refused
            fresh = (
                f" (a run with another lr needs a fresh folder: delete {directory} or use another)"
            )
        return TrainingDivergedError(
            f"training diverged: {what} at step {t} (lr={lr}); lower the learning rate "
            f"(lr; train.lr in a study configuration){fresh} or check the inputs for NaN/inf"
        )

    was_training = model.training
    if not resumed:
        at_state(0)
    elif start == steps and progress:
        sys.stderr.write(f"train: all {steps} steps already in {directory}; nothing to do\n")
    if start < steps:
        schedule = batch_schedule(n, batch_size, seed, start, steps)
        if inputs is not None and targets is not None:
            batches: Iterable[tuple[Tensor, Tensor]] = (fetch(j) for j in schedule)
        else:
            batches = DataLoader(
                train_data,
                batch_sampler=[j.tolist() for j in schedule],
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
            )
        params = [p for p in model.parameters() if p.requires_grad]
        bar = Progress(steps, "train", enabled=progress, unit="steps", initial=start)
        devices = [device.index or 0] if device.type == "cuda" else []
        model.train()
        with torch.random.fork_rng(devices=devices):
            for t, (x, y) in zip(range(start, steps), batches, strict=False):
                seed_step(device, mix_seed(seed, t, 1))
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                out = model(x)
                loss = loss_fn(out, y)
                loss_value, acc = torch.stack(
                    [loss.detach(), (out.argmax(1) == y).to(loss.dtype).mean()]
                ).tolist()
                if not math.isfinite(loss_value):
                    raise diverged(t, f"the training loss is {loss_value}")
                first = log.losses[0] if log.losses else loss_value
                if max_loss_ratio is not None and first > 0 and loss_value > max_loss_ratio * first:
                    raise diverged(
                        t,
                        f"the training loss is {loss_value:.6g}, over {max_loss_ratio:g} x its "
                        f"value at step 0 ({first:.6g}),",
                    )
                log.steps.append(t)
                log.losses.append(loss_value)
                log.accuracies.append(acc)
                for p in params:
                    p.grad = None
                loss.backward()
                with torch.no_grad():  # plain SGD, no optimizer state: θ <- θ - lr ∇L
                    for p in params:
                        if p.grad is not None:
                            p.add_(p.grad, alpha=-lr)
                    finite = bool(torch.stack([p.isfinite().all() for p in params]).all())
                if not finite:
                    raise diverged(
                        t, f"the parameters became non-finite in the update (loss {loss_value:.6g})"
                    )
                at_state(t + 1)
                if callback is not None:
                    model.train()  # the callback may have switched the mode
                if (t + 1) % log_every == 0 or t + 1 == steps:
                    bar.postfix = f"loss {loss_value:.4f}"
                    bar.update(t + 1 - bar.done)
            bar.close()
        for p in params:
            p.grad = None
    model.train(was_training)
    log.checkpoints = dict(sorted(log.checkpoints.items()))
    log.seconds = time.perf_counter() - started
    return log
