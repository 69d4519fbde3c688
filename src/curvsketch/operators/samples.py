"""The fixed set of samples over which a curvature operator averages its loss.

A curvature operator is defined by the *mean* loss over all samples of ``data``. How the
samples are split into batches (by the user) and micro-batches (by us, for speed and
memory) must not change the operator, so every micro-batch is weighted by its share of
the samples. This module turns the forms users pass (one ``(X, y)`` pair, a list of
``(inputs, targets)`` batches, a re-iterable loader) into a stream of weighted
micro-batches on the right device and dtype.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["MicroBatch", "Samples"]


@dataclass(frozen=True)
class MicroBatch:
    """One micro-batch: inputs, targets, its weight in the mean, and where it came from."""

    inputs: Any
    targets: Any
    weight: float
    batch_index: int
    start: int
    stop: int

    def where(self) -> str:
        """Human-readable location, for error messages."""
        return f"batch {self.batch_index}, samples [{self.start}:{self.stop})"


def _num_samples(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        if x.ndim == 0:
            raise ValueError("data: inputs must have a leading sample dimension, got a 0-d tensor")
        return int(x.shape[0])
    if isinstance(x, (tuple, list)) and x:
        return _num_samples(x[0])
    if isinstance(x, dict) and x:
        return _num_samples(next(iter(x.values())))
    raise TypeError(
        f"data: cannot tell the number of samples of inputs of type {type(x).__name__}; "
        "pass tensors (or tuples/dicts of tensors) with a leading sample dimension"
    )


def _slice(x: Any, start: int, stop: int) -> Any:
    if isinstance(x, torch.Tensor):
        return x[start:stop]
    if isinstance(x, tuple):
        return tuple(_slice(t, start, stop) for t in x)
    if isinstance(x, list):
        return [_slice(t, start, stop) for t in x]
    if isinstance(x, dict):
        return {k: _slice(v, start, stop) for k, v in x.items()}
    return x


def _to(x: Any, device: torch.device, dtype: torch.dtype) -> Any:
    if isinstance(x, torch.Tensor):
        if x.is_floating_point():
            return x.to(device=device, dtype=dtype)
        return x.to(device=device)
    if isinstance(x, tuple):
        return tuple(_to(t, device, dtype) for t in x)
    if isinstance(x, list):
        return [_to(t, device, dtype) for t in x]
    if isinstance(x, dict):
        return {k: _to(v, device, dtype) for k, v in x.items()}
    return x


def _is_pair(data: Any) -> bool:
    """One ``(X, y)`` pair: a 2-tuple whose first item is a tensor with more samples than 2
    or whose second item is a tensor of targets, as opposed to a sequence of batches."""
    if not (isinstance(data, tuple) and len(data) == 2):
        return False
    x, y = data
    return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)


class Samples:
    """A re-iterable, weighted stream of micro-batches over a fixed set of samples.

    Args:
        data: one ``(X, y)`` pair of tensors, or a sequence / re-iterable of
            ``(inputs, targets)`` batches (a list, or a ``DataLoader`` without shuffling).
        micro_batch_size: split batches into pieces of at most this many samples
            (``None``: keep the batches as given).
        reduction: ``"mean"`` if ``loss_fn`` averages over the samples of a batch (PyTorch's
            default), ``"sum"`` if it sums.

    Raises:
        ValueError: empty data, a bad batch, or a non-positive micro-batch size.
        TypeError: a one-shot iterator (it could not be read twice) or an unknown form.
    """

    def __init__(
        self, data: Any, micro_batch_size: int | None = None, reduction: str = "mean"
    ) -> None:
        if micro_batch_size is not None and (
            not isinstance(micro_batch_size, int) or micro_batch_size < 1
        ):
            raise ValueError(
                f"micro_batch_size must be a positive integer or None, got {micro_batch_size!r}"
            )
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if _is_pair(data):
            batches: Iterable = [data]
        elif isinstance(data, Iterator):
            raise TypeError(
                "data: got a one-shot iterator (e.g. a generator); every product reads the data "
                "again, so pass a list of (inputs, targets) batches or a DataLoader"
            )
        elif isinstance(data, Iterable):
            batches = data
        else:
            raise TypeError(
                f"data: expected an (X, y) pair or a sequence of (inputs, targets) batches, "
                f"got {type(data).__name__}"
            )
        self._batches = batches
        self.micro_batch_size = micro_batch_size
        self.reduction = reduction
        self.sizes = self._count()
        self.num_samples = sum(self.sizes)
        if self.num_samples == 0:
            raise ValueError("data: no samples; pass at least one (inputs, targets) batch")

    def _count(self) -> list[int]:
        sizes = []
        for i, batch in enumerate(self._batches):
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise ValueError(
                    f"data: batch {i} must be an (inputs, targets) pair, got {type(batch).__name__}"
                    + (f" of length {len(batch)}" if isinstance(batch, Sequence) else "")
                )
            n = _num_samples(batch[0])
            if n != _num_samples(batch[1]) and isinstance(batch[1], torch.Tensor):
                raise ValueError(
                    f"data: batch {i} has {n} inputs but {_num_samples(batch[1])} targets"
                )
            sizes.append(n)
        return sizes

    def __len__(self) -> int:
        """Number of micro-batches in one pass."""
        m = self.micro_batch_size
        return sum(-(-n // m) if m else 1 for n in self.sizes if n)

    def iterate(self, device: torch.device, dtype: torch.dtype) -> Iterator[MicroBatch]:
        """Yield the weighted micro-batches of one pass, moved to ``device``/``dtype``.

        The weights sum to one for ``reduction="mean"`` (each micro-batch's mean loss is
        weighted by its share of samples) and to ``1/N`` per sample for ``"sum"``.

        Args:
            device: device to move tensors to.
            dtype: floating dtype for floating-point tensors (integer targets keep theirs).

        Yields:
            :class:`MicroBatch` objects.

        Raises:
            RuntimeError: if the data changed size since the operator was built.
        """
        total = self.num_samples
        seen = 0
        for i, (x, y) in enumerate(self._batches):
            n = _num_samples(x)
            if i >= len(self.sizes) or n != self.sizes[i]:
                raise RuntimeError(
                    f"data: batch {i} now has {n} samples, it had "
                    f"{self.sizes[i] if i < len(self.sizes) else 'none'}; the data must be the "
                    "same fixed set of samples on every pass (no drop_last with a random sampler)"
                )
            step = self.micro_batch_size or n
            for start in range(0, n, step):
                stop = min(start + step, n)
                share = stop - start
                weight = share / total if self.reduction == "mean" else 1.0 / total
                yield MicroBatch(
                    _to(_slice(x, start, stop), device, dtype),
                    _to(_slice(y, start, stop), device, dtype),
                    weight,
                    i,
                    seen + start,
                    seen + stop,
                )
            seen += n
