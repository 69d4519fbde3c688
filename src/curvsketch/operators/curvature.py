"""Hessian and generalized Gauss-Newton of a network's mean loss, as linear operators.

``HessianOperator(model, loss_fn, data) @ V`` is the exact Hessian of
``L(θ) = (1/N) Σ_n loss(model(x_n; θ), y_n)`` with respect to the chosen parameters,
times a block ``V`` of shape ``(D, m)``, computed matrix-free (Pearlmutter 1994) one data
pass per block: every micro-batch serves all ``m`` vectors. ``GGNOperator`` does the same
for ``G = Σ_n J_nᵀ ∇²_f loss J_n / N`` (Schraudolph 2002), which is PSD for convex losses.

Guards run before expensive work: data shape and emptiness, a scalar loss, trainable
parameters, and on the first product a determinism probe (two products of one random
vector must agree), so that dropout-like randomness, random augmentation or a loader that
changes between passes fails loudly instead of silently corrupting a sketch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from curvsketch.operators.engines import ENGINES, Problem
from curvsketch.operators.protocol import LinearOperator
from curvsketch.operators.samples import Samples

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


#: At most this many vectors of the first block are used to time the engines (``"auto"``).
AUTO_PROBE_VECTORS = 64


class CurvatureOperator(LinearOperator):
    """Base class of the Hessian and GGN operators (symmetric, ``D × D``).

    Args:
        model: the network. Put it on the device and dtype you want products in.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (mean over the batch by default).
        data: an ``(X, y)`` pair, or a sequence / re-iterable loader of ``(inputs, targets)``.
        params: parameters to differentiate (default: all trainable parameters, in
            ``model.parameters()`` order); a subset gives a per-block curvature.
        engine: ``"auto"`` (time the engines on the first block, keep the fastest), or one
            of ``engines`` (e.g. ``"graph"``, ``"vmap"``).
        micro_batch_size: split batches into pieces of this many samples (``None``: as given).
        reduction: ``"mean"`` (default) or ``"sum"``: how ``loss_fn`` reduces over a batch.
        check_determinism: run the determinism probe before the first product.
        determinism_rtol: relative tolerance of the probe (default: 1e-4 in float32,
            1e-9 in float64).

    Attributes:
        shape, dtype, device: of the operator. ``num_params`` is ``D``.
        engine: the engine in use (after ``"auto"`` has chosen, the chosen one).
        num_products: vectors multiplied so far (probe included).
        engine_timings: seconds per vector measured by ``"auto"`` for each engine.
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
        self.samples = Samples(data, micro_batch_size=micro_batch_size, reduction=reduction)
        self._problem = Problem(model, loss_fn, plist, names)
        self.param_names = names
        self.num_params = sum(p.numel() for p in plist)
        self.shape = (self.num_params, self.num_params)
        self.dtype = plist[0].dtype
        self.device = plist[0].device
        self.engine = engine
        self.engine_timings: dict[str, float] = {}
        self.num_products = 0
        self._check = check_determinism
        default_rtol = 1e-9 if self.dtype == torch.float64 else 1e-4
        self.determinism_rtol = default_rtol if determinism_rtol is None else determinism_rtol

    @property
    def params(self) -> list[torch.Tensor]:
        """The differentiated parameters, in order."""
        return list(self._problem.params)

    def parameter_vector(self) -> torch.Tensor:
        """The current parameter values, flattened in operator order, as a ``(D,)`` tensor."""
        return torch.cat([p.detach().reshape(-1) for p in self._problem.params])

    # ------------------------------------------------------------------ products
    def _pass(self, V: torch.Tensor, engine: str) -> torch.Tensor:
        """One data pass: Σ_mb weight · curvature(mb) · V, with ``V`` as ``(m, D)``."""
        fn = ENGINES[self.kind][engine]
        out = torch.zeros_like(V)
        for mb in self.samples.iterate(self.device, self.dtype):
            part = fn(self._problem, mb, V)
            if not torch.isfinite(part).all():
                raise FloatingPointError(
                    f"non-finite curvature product at {mb.where()}; the loss or its derivatives "
                    "overflow there (check the inputs, the model's dtype and its parameters)"
                )
            out.add_(part, alpha=mb.weight)
        return out

    def _with_eval(self, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            return fn()
        finally:
            self.model.train(was_training)

    def _choose_engine(self, V: torch.Tensor) -> None:
        """Time each engine on the first micro-batch with the first block (up to
        ``AUTO_PROBE_VECTORS`` of its vectors); keep the fastest.

        The probe uses the caller's block size because the engines scale differently with
        it: vmapped engines gain per vector on larger blocks, the graph engine does not, so
        a probe of a few vectors can pick an engine that is slower on the real blocks.
        """
        mb = next(iter(self.samples.iterate(self.device, self.dtype)))
        probe = V[: min(AUTO_PROBE_VECTORS, V.shape[0])]
        best, best_t = None, float("inf")
        for name, fn in ENGINES[self.kind].items():
            try:
                fn(self._problem, mb, probe[:4])  # warm-up (allocations, lazy init)
                t0 = time.perf_counter()
                fn(self._problem, mb, probe)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                dt = (time.perf_counter() - t0) / probe.shape[0]
            except (RuntimeError, NotImplementedError, TypeError) as err:  # engine unsupported here
                self.engine_timings[name] = float("nan")
                if name == "graph":
                    raise err
                continue
            self.engine_timings[name] = dt
            if dt < best_t:
                best, best_t = name, dt
        assert best is not None
        self.engine = best

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

        def run() -> torch.Tensor:
            if self.engine == "auto":
                self._choose_engine(V)
            if self._check:
                self._probe_determinism()
                self._check = False
            return self._pass(V, self.engine)

        out = self._with_eval(run)
        self.num_products += V.shape[0]
        return out.T

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(D={self.num_params}, samples={self.samples.num_samples}, "
            f"engine={self.engine!r}, dtype={self.dtype}, device={self.device})"
        )


class HessianOperator(CurvatureOperator):
    """The exact Hessian of the mean loss over ``data`` w.r.t. ``params`` (see base class).

    Example:
        >>> H = HessianOperator(model, torch.nn.functional.cross_entropy, (X, y))
        >>> HV = H @ torch.randn(H.shape[1], 8)
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
