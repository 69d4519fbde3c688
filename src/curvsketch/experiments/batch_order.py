"""The stateless training schedule: the batch of every step and the seed of its RNG.

Everything random in :func:`curvsketch.experiments.training.train` is a function of
``(seed, step)`` only, so a run resumed from a checkpoint takes exactly the batches and
dropout draws of an uninterrupted one: the batch of step t is a slice of a permutation
drawn from ``(seed, epoch)`` (:func:`batch_indices`, :func:`batch_schedule`), and the
default generators are re-seeded from ``(seed, step)`` before every step
(:func:`seed_step` with :func:`mix_seed`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["batch_indices", "batch_schedule", "mix_seed", "seed_step"]

_MASK64 = (1 << 64) - 1


def mix_seed(*words: int) -> int:
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
    return next(batch_schedule(n, batch_size, seed, step, step + 1))


def batch_schedule(n: int, batch_size: int, seed: int, start: int, stop: int) -> Iterator[Tensor]:
    """Batch indices of steps ``start, ..., stop - 1``; one permutation per epoch."""
    per_epoch = n // batch_size
    epoch, permutation = -1, torch.empty(0, dtype=torch.int64)
    for step in range(start, stop):
        if step // per_epoch != epoch:
            epoch = step // per_epoch
            generator = torch.Generator().manual_seed(mix_seed(seed, epoch, 0))
            permutation = torch.randperm(n, generator=generator)
        position = step % per_epoch
        yield permutation[position * batch_size : (position + 1) * batch_size]


def seed_step(device: torch.device, seed: int) -> None:
    """Seed the default generators that layers such as dropout draw from on ``device``."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)
