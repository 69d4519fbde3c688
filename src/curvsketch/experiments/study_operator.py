"""The curvature operator of a study, and the plan of its sketch: built in one place.

:func:`study_operator` is the one factory of a study's Hessian or GGN
(``docs/paper.md`` §4): the model is *copied* into the ``[hessian] dtype`` (the caller's
network is never changed), put in eval mode, and wrapped with the ``[hessian]`` engine and
micro-batch size. :func:`hessian_samples` picks the class-balanced samples of one split
that every analysed step uses, and :func:`study_plan` the frozen
:class:`~curvsketch.sketch.SketchPlan` of the ``[sketch]`` settings on that operator. The
study pipeline, ``curvsketch measure`` / ``recover`` and ``curvsketch spectrum`` build
their operators and plans here, so the three see the same matrix and the same sizes.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from curvsketch.experiments.data import Split, balanced_subset
from curvsketch.operators import GGNOperator, HessianOperator, as_operator
from curvsketch.operators.engines import ENGINES
from curvsketch.sketch import EighResult, SketchPlan, make_plan
from curvsketch.sketch.seigh import solve

__all__ = [
    "DTYPES",
    "KINDS",
    "hessian_samples",
    "sketch_eigenpairs",
    "study_operator",
    "study_plan",
]

#: The dtypes a study names (``[hessian] dtype`` and ``exact_dtype``).
DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}
#: The curvatures a study can analyse.
KINDS: tuple[str, ...] = ("hessian", "ggn")


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype={dtype} must be torch.float64 or torch.float32")
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} must be one of {', '.join(map(repr, DTYPES))}")
    return DTYPES[dtype]


def hessian_samples(config: Any, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """The class-balanced Hessian samples ``(X, y)`` of one split of a study.

    ``config.data.hessian_per_class`` samples of every class, drawn with
    ``config.data.seed`` (:func:`~curvsketch.experiments.data.balanced_subset`): the same
    samples in every analysed step, in ``curvsketch measure`` and in ``curvsketch spectrum``.

    Args:
        config: a :class:`~curvsketch.experiments.config.StudyConfig`.
        split: the training or test split of the study's data.

    Returns:
        ``(inputs, targets)`` of the selected samples.
    """
    idx = balanced_subset(split.targets, config.data.hessian_per_class, seed=config.data.seed)
    return split.inputs[idx], split.targets[idx]


def study_operator(
    config: Any,
    model: nn.Module,
    data: Any,
    *,
    kind: str | None = None,
    dtype: str | torch.dtype | None = None,
    loss_fn: Any = None,
    check_determinism: bool = True,
) -> HessianOperator | GGNOperator:
    """The curvature operator of a study on ``data``, on a copy of ``model``.

    Args:
        config: a :class:`~curvsketch.experiments.config.StudyConfig` (its ``[hessian]``
            section gives the default kind and dtype, the engine and the micro-batch size).
        model: the network; it is copied (:func:`copy.deepcopy`) and the copy converted to
            ``dtype`` and put in eval mode, so ``model`` itself is never changed.
        data: the samples, e.g. ``hessian_samples(config, split)`` (anything
            :class:`curvsketch.HessianOperator` accepts).
        kind: ``"hessian"`` or ``"ggn"`` (default ``config.hessian.kind``).
        dtype: dtype of the products, ``"float64"``/``"float32"`` or a torch dtype
            (default ``config.hessian.dtype``).
        loss_fn: mean-reduced loss (default: cross-entropy, the study's loss).
        check_determinism: run the operator's determinism probe before the first product.

    Returns:
        A :class:`~curvsketch.operators.HessianOperator` or
        :class:`~curvsketch.operators.GGNOperator`. ``config.hessian.engine`` is used
        when it is an engine of ``kind`` (e.g. ``"graph_batched"`` is Hessian-only; the
        GGN then chooses with ``"auto"``).

    Raises:
        ValueError: an unknown ``kind`` or ``dtype``.

    Example:
        ``study_operator(config, model, hessian_samples(config, train_split))`` is the
        operator a study sketches; ``study_operator(..., dtype="float64")`` its exact
        reference in another dtype, from the same weights.
    """
    h = config.hessian
    kind = h.kind if kind is None else kind
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} must be one of {', '.join(map(repr, KINDS))}")
    work = copy.deepcopy(model).to(dtype=_dtype(h.dtype if dtype is None else dtype)).eval()
    cls = HessianOperator if kind == "hessian" else GGNOperator
    engine = h.engine if h.engine == "auto" or h.engine in ENGINES[kind] else "auto"
    return cls(
        work,
        nn.CrossEntropyLoss() if loss_fn is None else loss_fn,
        data,
        engine=engine,
        micro_batch_size=h.micro_batch_size,
        check_determinism=check_determinism,
    )


def study_plan(op: Any, sketch: Any) -> SketchPlan:
    """The :class:`curvsketch.sketch.SketchPlan` of a study's ``[sketch]`` settings on ``op``.

    ``outer`` and ``inner`` are capped at ``D``; ``inner`` defaults to ``2·outer`` for the
    recoveries that take one (``singlepass``/``tropp``, ``krylov``) and is ignored by the
    others (:func:`curvsketch.sketch.make_plan` with ``cap_to_dim=True``); ``which``
    (``[sketch] which``, default ``"LM"``) picks the end of the spectrum.
    """
    return make_plan(
        op,
        sketch.outer,
        sketch.inner,
        recovery=sketch.recovery,
        noise=sketch.noise,
        seed=sketch.seed,
        block_size=sketch.block_size,
        power_iters=sketch.power_iters,
        which=getattr(sketch, "which", "LM"),
        cap_to_dim=True,
    )


def sketch_eigenpairs(op: Any, sketch: Any, *, progress: bool = False) -> EighResult:
    """:func:`curvsketch.seigh` of ``op`` with a study's ``[sketch]`` settings
    (:func:`study_plan`)."""
    op = as_operator(op)
    return solve(op, study_plan(op, sketch), progress=progress)
