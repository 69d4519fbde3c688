"""The fixed set of samples over which a curvature operator averages its loss.

A curvature operator is defined by the *mean* loss over all loss terms of ``data``: the
samples, or, for a per-target loss (token cross-entropy with padding), the targets that
``num_loss_terms`` counts (see :mod:`curvsketch.operators.loss_terms`). How the data is
split into batches (by the user) and micro-batches (by us, for speed and memory) must not
change the operator, so every micro-batch is weighted by its share of the terms. This
module turns the forms users pass (see :mod:`curvsketch.operators.batches`) into a stream
of weighted micro-batches on the right device and dtype.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from curvsketch.operators.batches import (
    batch_form_error,
    check_data_form,
    num_samples,
    slice_samples,
    tensor_leaves,
    to_device,
)
from curvsketch.operators.loss_terms import LossTermCounter, checked_count

__all__ = ["MicroBatch", "Samples"]


@dataclass(frozen=True)
class MicroBatch:
    """One micro-batch: inputs, targets, its weight in the mean, and where it came from.

    ``terms`` is the number of loss terms it holds (its samples, unless ``num_loss_terms``
    counts otherwise).
    """

    inputs: Any
    targets: Any
    weight: float
    batch_index: int
    start: int
    stop: int
    terms: int = -1

    def where(self) -> str:
        """Human-readable location, for error messages."""
        return f"batch {self.batch_index}, samples [{self.start}:{self.stop})"


class Samples:
    """A re-iterable, weighted stream of micro-batches over a fixed set of samples.

    Args:
        data: one ``(inputs, targets)`` pair, or a sequence / re-iterable of pairs (a
            list, or a ``DataLoader`` without shuffling); see
            :mod:`curvsketch.operators.batches` for the forms of inputs and targets.
        micro_batch_size: split batches into pieces of at most this many samples
            (``None``: keep the batches as given).
        reduction: ``"mean"`` if ``loss_fn`` averages over the terms of a batch (PyTorch's
            default), ``"sum"`` if it sums.
        num_loss_terms: ``(inputs, targets) -> int``, the number of loss terms of a batch
            (e.g. :func:`~curvsketch.operators.count_targets` for token losses with
            ``ignore_index`` padding). ``None``: one term per sample.

    Attributes:
        sizes: samples per batch. ``num_samples``: their sum.
        num_terms: loss terms over all of ``data`` (``num_samples`` without a counter).

    Raises:
        ValueError: empty data, a bad batch, no loss terms, or a non-positive micro-batch size.
        TypeError: a one-shot iterator (it could not be read twice) or an unknown form.
    """

    def __init__(
        self,
        data: Any,
        micro_batch_size: int | None = None,
        reduction: str = "mean",
        num_loss_terms: LossTermCounter | None = None,
    ) -> None:
        if micro_batch_size is not None and (
            isinstance(micro_batch_size, bool)
            or not isinstance(micro_batch_size, int)
            or micro_batch_size < 1
        ):
            raise ValueError(
                f"micro_batch_size must be a positive integer or None, got {micro_batch_size!r}"
            )
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if num_loss_terms is not None and not callable(num_loss_terms):
            raise TypeError(
                "num_loss_terms must be a callable (inputs, targets) -> int, e.g. "
                f"curvsketch.operators.count_targets(-100); got {type(num_loss_terms).__name__}"
            )
        self._data = data
        self._batches = check_data_form(data)
        self.micro_batch_size = micro_batch_size
        self.reduction = reduction
        self.num_loss_terms = num_loss_terms
        self.sizes: list[int] = []
        self._terms: list[int] = []  # per micro-batch, in iteration order
        self._count()
        self.num_samples = sum(self.sizes)
        if self.num_samples == 0:
            raise ValueError("data: no samples; pass at least one (inputs, targets) batch")
        self.num_terms = sum(self._terms)
        if self.num_terms == 0:
            raise ValueError(
                f"data: num_loss_terms counts 0 loss terms in all {self.num_samples} samples "
                "(every target ignored?); the mean loss is undefined"
            )

    def _check_batch(self, i: int, batch: Any) -> int:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise batch_form_error(i, batch, self._data)
        x, y = batch
        n = num_samples(x, f"batch {i} inputs")
        if any(True for _ in tensor_leaves(y)):
            ny = num_samples(y, f"batch {i} targets")
            if ny != n:
                raise ValueError(f"data: batch {i} has {n} inputs but {ny} targets")
        return n

    def _spans(self, n: int) -> range:
        return range(0, n, self.micro_batch_size or max(n, 1))

    def _terms_of(self, x: Any, y: Any, i: int, start: int, stop: int) -> int:
        if self.num_loss_terms is None:
            return stop - start
        where = f"batch {i}, samples [{start}:{stop})"
        return checked_count(
            self.num_loss_terms, slice_samples(x, start, stop), slice_samples(y, start, stop), where
        )

    def _count(self) -> None:
        for i, batch in enumerate(self._batches):
            n = self._check_batch(i, batch)
            self.sizes.append(n)
            x, y = batch
            for start in self._spans(n):
                stop = min(start + (self.micro_batch_size or n), n)
                self._terms.append(self._terms_of(x, y, i, start, stop))

    def __len__(self) -> int:
        """Number of micro-batches in one pass (those without loss terms are skipped)."""
        return sum(1 for t in self._terms if t)

    def iterate(self, device: torch.device, dtype: torch.dtype) -> Iterator[MicroBatch]:
        """Yield the weighted micro-batches of one pass, moved to ``device``/``dtype``.

        For ``reduction="mean"`` each micro-batch's mean loss is weighted by its share of
        the loss terms (the weights sum to one); for ``"sum"`` by ``1/T`` (``T`` terms in
        all). Micro-batches with no loss terms (all targets ignored) are skipped: their
        mean loss is undefined (0/0) and they contribute nothing.

        Args:
            device: device to move tensors to.
            dtype: floating dtype for floating-point tensors (integer tensors keep theirs).

        Yields:
            :class:`MicroBatch` objects.

        Raises:
            RuntimeError: if the data changed (size or loss terms) since the operator was built.
        """
        total = self.num_terms
        seen = 0
        k = 0
        i = -1
        for i, batch in enumerate(self._batches):
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise batch_form_error(i, batch, self._data)
            x, y = batch
            n = num_samples(x, f"batch {i} inputs")
            if i >= len(self.sizes) or n != self.sizes[i]:
                raise RuntimeError(
                    f"data: batch {i} now has {n} samples, it had "
                    f"{self.sizes[i] if i < len(self.sizes) else 'none'}; the data must be the "
                    "same fixed set of samples on every pass (no drop_last with a random sampler)"
                )
            for start in self._spans(n):
                stop = min(start + (self.micro_batch_size or n), n)
                terms = self._terms_of(x, y, i, start, stop)
                if terms != self._terms[k]:
                    raise RuntimeError(
                        f"data: batch {i}, samples [{start}:{stop}) now holds {terms} loss terms, "
                        f"it held {self._terms[k]}; the data must be the same on every pass"
                    )
                k += 1
                if terms == 0:
                    continue
                weight = terms / total if self.reduction == "mean" else 1.0 / total
                yield MicroBatch(
                    to_device(slice_samples(x, start, stop), device, dtype),
                    to_device(slice_samples(y, start, stop), device, dtype),
                    weight,
                    i,
                    seen + start,
                    seen + stop,
                    terms,
                )
            seen += n
        if i + 1 != len(self.sizes):
            raise RuntimeError(
                f"data: this pass had {i + 1} batches, the first had {len(self.sizes)}; the data "
                "must be the same fixed set of samples on every pass"
            )
