"""How many loss terms a batch holds: the weights of a per-target (e.g. per-token) mean.

A curvature operator is the Hessian of the mean loss over *all loss terms* of ``data``.
For a per-sample loss (classification, regression) a term is a sample, and a micro-batch's
mean loss is weighted by its share of the samples. For a per-target loss (a causal LM's
token cross-entropy with padding marked ``ignore_index=-100``, a masked loss) a batch holds
as many terms as it has counted targets, and ``loss_fn`` averages over those: then the
micro-batch's weight must be its share of the *terms*, or the operator depends on how the
data is split (short sequences weigh as much as long ones). ``num_loss_terms(inputs,
targets) -> int`` says how many terms a batch holds; :func:`count_targets` is the ready
choice for targets that mark ignored positions with an index.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["CountTargets", "LossTermCounter", "checked_count", "count_targets"]

#: ``num_loss_terms(inputs, targets) -> int``: the number of loss terms in a batch.
LossTermCounter = Callable[[Any, Any], int]


@dataclass(frozen=True)
class CountTargets:
    """Count the targets not equal to ``ignore_index`` (see :func:`count_targets`)."""

    ignore_index: int = -100
    shift: int = 0

    def __call__(self, inputs: Any, targets: Any) -> int:
        """Number of counted targets in one batch."""
        if not isinstance(targets, torch.Tensor):
            raise TypeError(
                f"count_targets: targets must be a tensor of target indices, got "
                f"{type(targets).__name__}; write your own num_loss_terms(inputs, targets) -> int"
            )
        if targets.is_floating_point() or targets.is_complex():
            raise TypeError(
                f"count_targets: targets have dtype {targets.dtype}; it counts integer target "
                "indices (class / token ids with ignore_index padding)"
            )
        t = targets[..., self.shift :] if self.shift else targets
        return int((t != self.ignore_index).sum())


def count_targets(ignore_index: int = -100, *, shift: int = 0) -> CountTargets:
    """``num_loss_terms`` for index targets with ignored positions (token-level losses).

    Counts the entries of ``targets`` that differ from ``ignore_index``, i.e. the terms
    ``F.cross_entropy(..., ignore_index=ignore_index)`` averages over.

    Args:
        ignore_index: the padding / ignored target value (PyTorch's default is ``-100``).
        shift: drop the first ``shift`` positions along the last dimension before counting,
            for a loss that shifts the labels (Hugging Face causal LMs compare logits at
            ``t`` with labels at ``t + 1``: use ``shift=1`` with ``labels[..., 1:]``).

    Returns:
        A callable ``(inputs, targets) -> int``.

    Example:
        >>> loss = lambda out, y: F.cross_entropy(out.flatten(0, 1), y.flatten())
        >>> H = HessianOperator(lm, loss, batches, num_loss_terms=count_targets(-100))
    """
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"count_targets: ignore_index must be an int, got {ignore_index!r}")
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ValueError(f"count_targets: shift must be a non-negative int, got {shift!r}")
    return CountTargets(ignore_index, shift)


def checked_count(counter: LossTermCounter, inputs: Any, targets: Any, where: str) -> int:
    """Call ``counter`` and check it returned a non-negative integer.

    Args:
        counter: the ``num_loss_terms`` callable.
        inputs, targets: one micro-batch.
        where: location for error messages (``"batch 2, samples [8:12)"``).

    Raises:
        TypeError / ValueError: naming ``num_loss_terms``, the batch and what it returned.
    """
    n = counter(inputs, targets)
    if isinstance(n, torch.Tensor) and n.numel() == 1 and not n.is_floating_point():
        n = int(n.item())
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(
            f"num_loss_terms must return an int, got {type(n).__name__} ({n!r}) at {where}"
        )
    if n < 0:
        raise ValueError(f"num_loss_terms returned {n} < 0 at {where}")
    return int(n)
