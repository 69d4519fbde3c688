"""Hessian and generalized Gauss-Newton of a network's mean loss, as linear operators.

``HessianOperator(model, loss_fn, data) @ V`` is the exact Hessian of
``L(θ) = (1/N) Σ_n loss(model(x_n; θ), y_n)`` with respect to the chosen parameters,
times a block ``V`` of shape ``(D, m)``, computed matrix-free (Pearlmutter 1994) one data
pass per block: every micro-batch serves all ``m`` vectors. ``GGNOperator`` does the same
for ``G = Σ_n J_nᵀ ∇²_f loss J_n / N`` (Schraudolph 2002), which is PSD for convex losses.
For per-target losses (token cross-entropy with padding) ``N`` counts loss terms, not
samples (``num_loss_terms``). ``op.gradient()`` is the gradient of the same mean loss.

Guards run before expensive work: data shape and emptiness, a scalar loss, trainable
parameters, and on the first product a determinism probe (two products of one random
vector must agree), so that dropout-like randomness, random augmentation or a loader that
changes between passes fails loudly instead of silently corrupting a sketch. An engine
that cannot run the model is named with the reason (:class:`EngineError`,
``op.engine_errors``), and integer inputs meeting a float model say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from curvsketch.operators.engines import ENGINES, Problem, flatten_parts, input_dtype_error
from curvsketch.operators.loss_terms import LossTermCounter
from curvsketch.operators.modes import product_mode, warn_batch_norm
from curvsketch.operators.protocol import LinearOperator
from curvsketch.operators.samples import MicroBatch, Samples
from curvsketch.operators.selection import (
    AUTO_MIN_BLOCK,
    ENGINE_FAILURES,
    choose_engine,
    engine_failure,
)

__all__ = ["CurvatureOperator", "GGNOperator", "HessianOperator", "NonDeterminismError"]


class NonDeterminismError(RuntimeError):
    """Two products of the same vector disagreed: the operator is not a fixed matrix."""


def _select_params(model: nn.Module, params: Iterable[torch.Tensor] | None) -> tuple[list, list]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params is None:
        chosen = named
    else:
        wanted = list(params)
        by_id = {id(p): n for n, p in model.named_parameters()}
        chosen = []
        for i, p in enumerate(wanted):
            if not isinstance(p, torch.Tensor):
                raise TypeError(
                    f"params[{i}] must be a parameter tensor of the model, got {type(p).__name__}"
                )
            if id(p) not in by_id:
                raise ValueError(
                    f"params[{i}] (shape {tuple(p.shape)}) is not a parameter of the model; pass "
                    "tensors from model.parameters(), e.g. params=list(model[0].parameters())"
                )
            if not p.requires_grad:
                raise ValueError(f"params[{i}] ({by_id[id(p)]}) has requires_grad=False")
            chosen.append((by_id[id(p)], p))
        if len({id(p) for _, p in chosen}) != len(chosen):
            raise ValueError("params: the same parameter is listed twice")
    if not chosen:
        raise ValueError(
            "the model has no trainable parameters to differentiate; "
            "check requires_grad or pass params="
        )
    dtypes = {p.dtype for _, p in chosen}
    devices = {p.device for _, p in chosen}
    if len(dtypes) > 1 or len(devices) > 1:
        raise ValueError(
            f"all parameters must share one dtype and device, got {dtypes} on {devices}; "
            "call model.to(dtype, device) first"
        )
    return [n for n, _ in chosen], [p for _, p in chosen]


class CurvatureOperator(LinearOperator):
    """Base class of the Hessian and GGN operators (symmetric, ``D × D``).

    Args:
        model: the network. Put it on the device and dtype you want products in.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (mean over the batch by default).
        data: an ``(inputs, targets)`` pair, or a sequence / re-iterable loader of pairs.
            Inputs may be a tensor (``model(x)``), a tuple or list (``model(*x)``) or a dict
            of tensors (``model(**x)``); see :mod:`curvsketch.operators.batches` and, for
            Hugging-Face-style dict batches, :func:`~curvsketch.operators.dict_batches`.
        params: parameters to differentiate (default: all trainable parameters, in
            ``model.parameters()`` order); a subset gives a per-block curvature.
        engine: ``"auto"`` (time the engines on the first block of at least
            ``AUTO_MIN_BLOCK`` = 8 vectors, keep the fastest; a smaller first block is
            computed on a provisional choice), or one
            of ``engines`` (e.g. ``"graph"``, ``"vmap"``).
        micro_batch_size: split batches into pieces of this many samples (``None``: as given).
        reduction: ``"mean"`` (default) or ``"sum"``: how ``loss_fn`` reduces over a batch.
        num_loss_terms: ``(inputs, targets) -> int``, how many loss terms a batch holds,
            when ``loss_fn`` averages over something other than samples (token losses with
            padding: :func:`~curvsketch.operators.count_targets`). Micro-batches are then
            weighted by their share of the terms, so the operator is the curvature of the
            mean over all terms of ``data`` however it is batched. ``None``: per-sample.
        check_determinism: run the determinism probe before the first product.
        determinism_rtol: relative tolerance of the probe (default: 1e-4 in float32,
            1e-9 in float64).

    Attributes:
        shape, dtype, device: of the operator. ``num_params`` is ``D``.
        engine: the engine in use (after ``"auto"`` has chosen, the chosen one).
        num_products: vectors multiplied so far (probe included).
        engine_timings: seconds per vector measured by ``"auto"`` for each engine (``nan``
            for an engine that failed).
        engine_errors: for each engine that ``"auto"`` found unable to run the model, why.

    Products run in eval mode, with the math kernel of ``scaled_dot_product_attention`` and
    the fused transformer fast paths off (see :mod:`curvsketch.operators.modes`); models
    with batch-norm get a one-time :class:`~curvsketch.operators.BatchNormEvalWarning`.
    """

    kind: str = "hessian"

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Any], torch.Tensor],
        data: Any,
        *,
        params: Iterable[torch.Tensor] | None = None,
        engine: str = "auto",
        micro_batch_size: int | None = None,
        reduction: str = "mean",
        num_loss_terms: LossTermCounter | None = None,
        check_determinism: bool = True,
        determinism_rtol: float | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable as loss_fn(outputs, targets) -> scalar")
        engines = ENGINES[self.kind]
        if engine != "auto" and engine not in engines:
            raise ValueError(f"engine must be 'auto' or one of {sorted(engines)}, got {engine!r}")
        names, plist = _select_params(model, params)
        self.model = model
        self.loss_fn = loss_fn
        self.samples = Samples(
            data,
            micro_batch_size=micro_batch_size,
            reduction=reduction,
            num_loss_terms=num_loss_terms,
        )
        self._problem = Problem(model, loss_fn, plist, names)
        self.param_names = names
        self.num_params = sum(p.numel() for p in plist)
        self.shape = (self.num_params, self.num_params)
        self.dtype = plist[0].dtype
        self.device = plist[0].device
        self.engine = engine
        self.engine_timings: dict[str, float] = {}
        self.engine_errors: dict[str, str] = {}
        self.num_products = 0
        self._check = check_determinism
        self._checked_forward = False
        self._warned_batch_norm = False
        default_rtol = 1e-9 if self.dtype == torch.float64 else 1e-4
        self.determinism_rtol = default_rtol if determinism_rtol is None else determinism_rtol

    @property
    def params(self) -> list[torch.Tensor]:
        """The differentiated parameters, in order."""
        return list(self._problem.params)

    def parameter_vector(self) -> torch.Tensor:
        """The current parameter values, flattened in operator order, as a ``(D,)`` tensor."""
        return torch.cat([p.detach().reshape(-1) for p in self._problem.params])

    # ------------------------------------------------------------------ helpers
    def _notice(self, stacklevel: int) -> None:
        """The one-time batch-norm notice (``stacklevel`` counts from the caller)."""
        if not self._warned_batch_norm:
            self._warned_batch_norm = True
            warn_batch_norm(self.model, type(self).__name__, stacklevel=stacklevel + 1)

    @contextmanager
    def _mode(self) -> Iterator[None]:
        """Product mode (eval, math attention, no fast paths), plus the one-time forward check."""
        with product_mode(self.model):
            if not self._checked_forward:
                self._problem.check_forward(next(iter(self._micro_batches())))
                self._checked_forward = True
            yield

    def _micro_batches(self) -> Iterator[MicroBatch]:
        return self.samples.iterate(self.device, self.dtype)

    def _engine_error(self, engine: str, mb: MicroBatch, V: torch.Tensor, err: Exception):
        clear = input_dtype_error(err, mb.inputs, mb.where())
        if clear is not None:
            return clear
        return engine_failure(ENGINES[self.kind], engine, self._problem, mb, V, err, self.kind)

    @staticmethod
    def _check_finite(part: torch.Tensor, mb: MicroBatch, what: str) -> None:
        if not torch.isfinite(part).all():
            raise FloatingPointError(
                f"non-finite {what} at {mb.where()}; the loss or its derivatives "
                "overflow there (check the inputs, the model's dtype and its parameters)"
            )

    # ------------------------------------------------------------------ products
    def _pass(
        self, V: torch.Tensor, engine: str, first: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One data pass: Σ_mb weight · curvature(mb) · V, with ``V`` as ``(m, D)``.

        ``first``: the (unweighted) product of the first micro-batch, already computed.
        """
        fn = ENGINES[self.kind][engine]
        out = torch.zeros_like(V)
        for j, mb in enumerate(self._micro_batches()):
            if j == 0 and first is not None:
                part = first
            else:
                try:
                    part = fn(self._problem, mb, V)
                except ENGINE_FAILURES as err:
                    raise self._engine_error(engine, mb, V, err) from err
            self._check_finite(part, mb, "curvature product")
            out.add_(part, alpha=mb.weight)
        return out

    def _choose_engine(self, V: torch.Tensor) -> torch.Tensor:
        """Pick the fastest engine on the first micro-batch (see
        :mod:`curvsketch.operators.selection`); return that micro-batch's products."""
        mb = next(iter(self._micro_batches()))
        choice = choose_engine(ENGINES[self.kind], self._problem, mb, V)
        self.engine = choice.engine
        self.engine_timings = choice.timings
        self.engine_errors = choice.errors
        assert choice.part is not None
        return choice.part

    def _probe_determinism(self) -> None:
        gen = torch.Generator(device="cpu").manual_seed(1234)
        v = torch.randn(1, self.num_params, generator=gen, dtype=self.dtype).to(self.device)
        a = self._pass(v, self.engine)
        b = self._pass(v, self.engine)
        self.num_products += 2
        scale = float(a.norm())
        diff = float((a - b).norm())
        if diff > self.determinism_rtol * max(scale, torch.finfo(self.dtype).tiny):
            raise NonDeterminismError(
                "two products of the same vector differ (relative difference "
                f"{diff / scale:.2e} > {self.determinism_rtol:.0e}): the curvature is not a "
                "fixed matrix. Likely causes: "
                "dropout or other randomness active in eval mode, batch-norm or layers forced into "
                "train mode, random data augmentation, or a loader that shuffles / samples "
                "differently on each pass. Fix the data to a fixed set of samples, or pass "
                "check_determinism=False if the difference is expected rounding."
            )

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        V = x.T.contiguous()
        self._notice(stacklevel=3)  # _matmat <- __matmul__ <- the user's `op @ x`
        with self._mode():
            choosing = self.engine == "auto"
            first = self._choose_engine(V) if choosing else None
            if self._check:
                self._probe_determinism()
                self._check = False
            out = self._pass(V, self.engine, first=first)
            if choosing and V.shape[0] < AUTO_MIN_BLOCK:
                # A choice on a few vectors (seigh's symmetry check, a store's probe)
                # says little about the engines on real blocks: choose again on the next.
                self.engine = "auto"
        self.num_products += V.shape[0]
        return out.T

    def gradient(self) -> torch.Tensor:
        """The gradient of the operator's mean loss, flattened in operator order.

        Same samples, weights (``num_loss_terms`` included), parameters and mode (eval,
        math attention) as the products: the ``g`` of a quadratic model
        ``L(θ + d) ≈ L(θ) + gᵀd + ½ dᵀHd`` with ``H`` this operator.

        Returns:
            A ``(D,)`` tensor on the operator's device and dtype.

        Raises:
            FloatingPointError: a non-finite loss or gradient (naming the batch).
        """
        params = list(self._problem.params)
        g = torch.zeros(self.num_params, dtype=self.dtype, device=self.device)
        self._notice(stacklevel=2)
        with self._mode():
            for mb in self._micro_batches():
                with torch.enable_grad():
                    loss = self._problem.loss(self._problem.forward(mb), mb)
                    parts = torch.autograd.grad(loss, params, allow_unused=True)
                part = flatten_parts(parts, params)
                self._check_finite(part, mb, "gradient")
                g.add_(part, alpha=mb.weight)
        return g

    def __repr__(self) -> str:
        failed = f", engine_errors={sorted(self.engine_errors)}" if self.engine_errors else ""
        return (
            f"{type(self).__name__}(D={self.num_params}, samples={self.samples.num_samples}, "
            f"engine={self.engine!r}{failed}, dtype={self.dtype}, device={self.device})"
        )


class HessianOperator(CurvatureOperator):
    """The exact Hessian of the mean loss over ``data`` w.r.t. ``params`` (see base class).

    Example:
        A linear classifier with 3 inputs and 2 classes has D = 3·2 + 2 = 8 parameters;
        its Hessian times a block of vectors, checked against the dense one:

        >>> import torch
        >>> from curvsketch.operators import HessianOperator, dense_hessian
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(3, 2).double()
        >>> X, y = torch.randn(8, 3, dtype=torch.float64), torch.tensor([0, 1] * 4)
        >>> loss = torch.nn.functional.cross_entropy
        >>> H = HessianOperator(model, loss, (X, y))
        >>> H.shape
        (8, 8)
        >>> (H @ torch.randn(8, 3, dtype=torch.float64)).shape  # one data pass, 3 vectors
        torch.Size([8, 3])
        >>> full = H @ torch.eye(8, dtype=torch.float64)
        >>> torch.allclose(full, dense_hessian(model, loss, (X, y)))
        True
    """

    kind = "hessian"


class GGNOperator(CurvatureOperator):
    """The generalized Gauss-Newton ``Jᵀ ∇²loss J`` of the mean loss (see base class).

    The model must return one output tensor; the loss Hessian is taken w.r.t. it.
    """

    kind = "ggn"


def engines_for(kind: str) -> Sequence[str]:
    """Engines available for ``"hessian"`` or ``"ggn"`` operators."""
    return tuple(ENGINES[kind])
