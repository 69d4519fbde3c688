"""Plain SGD with a constant learning rate, seeded, checkpointed and resumable.

The paper trains every net with plain SGD (no momentum, no weight decay), a constant
learning rate and mean cross-entropy (``docs/paper.md`` §4), and computes Hessians at
chosen steps. Here "step t" always names the parameters θ_t after t updates: step 0 is
the initial model, the training loss logged at step t is the loss of θ_t on the t-th
batch (the one whose gradient gives θ_{t+1}).

Everything random is a function of ``(seed, step)``: the batch of step t is a slice of a
permutation drawn from ``(seed, epoch)``, and the global RNG (dropout) is re-seeded from
``(seed, step)`` before every step. A run resumed from a checkpoint is therefore
identical to an uninterrupted one: bit for bit on CPU; on CUDA only with
``torch.use_deterministic_algorithms(True)`` (and ``CUBLAS_WORKSPACE_CONFIG=:4096:8``),
since cuDNN's default convolution kernels differ between reruns (checked on an H200).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from curvsketch.progress import Progress

TrainData = tuple[Tensor, Tensor] | Dataset[Any]
StateDict = dict[str, Tensor]
LOG_FILE = "train_log.json"


_MASK64 = (1 << 64) - 1


def _derive_seed(*words: int) -> int:
    """A well-mixed 63-bit seed from integers (splitmix64 finaliser applied per word)."""
    state = 0x243F6A8885A308D3
    for word in words:
        z = (state + 0x9E3779B97F4A7C15 * (int(word) + 1)) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = z ^ (z >> 31)
    return state >> 1


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> Tensor:
    """Indices of the training batch used at ``step`` (stateless, so resumable).

    Each epoch is a fresh permutation of the n samples drawn from ``(seed, epoch)``, cut
    into ``n // batch_size`` full batches; a remainder smaller than a batch is skipped in
    that epoch (it is in other positions in the next one).
    """
    return next(_batch_schedule(n, batch_size, seed, step, step + 1))


def _batch_schedule(n: int, batch_size: int, seed: int, start: int, stop: int) -> Iterator[Tensor]:
    """Batch indices of steps ``start, ..., stop - 1``; one permutation per epoch."""
    per_epoch = n // batch_size
    epoch, permutation = -1, torch.empty(0, dtype=torch.int64)
    for step in range(start, stop):
        if step // per_epoch != epoch:
            epoch = step // per_epoch
            generator = torch.Generator().manual_seed(_derive_seed(seed, epoch, 0))
            permutation = torch.randperm(n, generator=generator)
        position = step % per_epoch
        yield permutation[position * batch_size : (position + 1) * batch_size]


def _seed_step(device: torch.device, seed: int) -> None:
    """Seed the default generators that layers such as dropout draw from on ``device``."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


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
        settings: lr, batch_size, seed, n_train and the parameter count of the run.
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
        """The model state at checkpoint ``step`` (loaded from disk if it was saved there)."""
        if step not in self.checkpoints:
            raise KeyError(f"no checkpoint at step {step}; checkpoints: {sorted(self.checkpoints)}")
        entry = self.checkpoints[step]
        if isinstance(entry, Path):
            return torch.load(entry, map_location=map_location, weights_only=True)["model"]
        return entry

    def _until(self, step: int) -> TrainLog:
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

    def _to_json(self) -> dict[str, Any]:
        names = ("steps", "losses", "accuracies", "eval_steps", "eval_losses", "eval_accuracies")
        return {"settings": self.settings, **{k: getattr(self, k) for k in names}}

    @classmethod
    def load(cls, checkpoint_dir: str | Path) -> TrainLog:
        """Read the log of a run trained into ``checkpoint_dir`` (checkpoints as paths)."""
        directory = Path(checkpoint_dir)
        path = directory / LOG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {directory} holds no training run")
        log = cls(**json.loads(path.read_text()))
        log.checkpoints = dict(sorted(_saved_checkpoints(directory).items()))
        return log


def _checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}.pt"


def _saved_checkpoints(directory: Path) -> dict[int, Path]:
    found = {}
    for path in directory.glob("step_*.pt"):
        stem = path.stem.removeprefix("step_")
        if stem.isdigit():
            found[int(stem)] = path
    return found


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


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


def _resume_point(
    directory: Path, settings: dict[str, Any], wanted: set[int], steps: int
) -> int | None:
    """Latest saved step from which every still-missing checkpoint can be produced."""
    log_path = directory / LOG_FILE
    if not log_path.is_file():
        return None
    saved_settings = json.loads(log_path.read_text())["settings"]
    diff = {
        k: (saved_settings.get(k), v) for k, v in settings.items() if saved_settings.get(k) != v
    }
    if diff:
        changes = ", ".join(f"{k}: saved {old!r} vs now {new!r}" for k, (old, new) in diff.items())
        raise ValueError(
            f"checkpoint_dir {directory} holds a run with other settings ({changes}); "
            "pass another checkpoint_dir or delete this one"
        )
    saved = {t for t in _saved_checkpoints(directory) if t <= steps}
    missing = wanted - saved
    limit = min(missing) if missing else steps
    return max((t for t in saved if t <= limit), default=None)


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
) -> TrainLog:
    """Train ``model`` in place with plain constant-lr SGD on mean cross-entropy.

    Checkpoints are taken at ``checkpoint_steps`` and always at steps 0 and ``steps``; at
    each, ``eval_data`` (if given) is evaluated in full. With ``checkpoint_dir`` they are
    saved there (``step_XXXXXXXX.pt`` plus ``train_log.json``, written atomically), and a
    later call with the same directory and settings resumes from the latest useful
    checkpoint instead of recomputing: a finished run returns at once, a longer run
    continues, a newly requested earlier checkpoint is recomputed from the one before it.
    The paper's MNIST setting is ``lr=0.3, batch_size=500``.

    Args:
        model: The network; it is left at θ_steps (in its original train/eval mode).
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

    Returns:
        The :class:`TrainLog`, including anything loaded from ``checkpoint_dir``.

    Raises:
        ValueError: a bad argument, or ``checkpoint_dir`` holds a run with other settings.
        FloatingPointError: the training loss became non-finite (the message names the step).
    """
    started = time.perf_counter()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    device = next(model.parameters()).device
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
    wanted = {0, steps, *checkpoint_steps}
    settings = {
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "n_train": n,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    log = TrainLog(settings=settings)
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None

    start, resumed = 0, False
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        resume = _resume_point(directory, settings, wanted, steps)
        if resume is not None:
            start, resumed = resume, True
            log = TrainLog.load(directory)._until(start)
            log.settings = settings
            model.load_state_dict(log.state_dict(start, map_location=device))

    def at_state(t: int) -> None:
        if t in wanted:
            if directory is not None:
                path = _checkpoint_path(directory, t)
                state = {"step": t, "model": model.state_dict()}
                _atomic_write(path, lambda tmp: torch.save(state, tmp))
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
                text = json.dumps(log._to_json())
                _atomic_write(directory / LOG_FILE, lambda tmp: tmp.write_text(text))
        if callback is not None:
            callback(t, model, log)

    was_training = model.training
    if not resumed:
        at_state(0)
    elif start == steps and progress:
        sys.stderr.write(f"train: all {steps} steps already in {directory}; nothing to do\n")
    if start < steps:
        schedule = _batch_schedule(n, batch_size, seed, start, steps)
        if isinstance(train_data, tuple):
            batches: Iterable[tuple[Tensor, Tensor]] = (
                (inputs.index_select(0, i), targets.index_select(0, i))  # 10x faster than [i]
                for i in (j.to(device) for j in schedule)
            )
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
                _seed_step(device, _derive_seed(seed, t, 1))
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                out = model(x)
                loss = loss_fn(out, y)
                loss_value, acc = torch.stack(
                    [loss.detach(), (out.argmax(1) == y).to(loss.dtype).mean()]
                ).tolist()
                if not math.isfinite(loss_value):
                    raise FloatingPointError(
                        f"training loss is {loss_value} at step {t} (lr={lr}); "
                        "lower the learning rate (lr) or check the inputs for NaN/inf"
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
