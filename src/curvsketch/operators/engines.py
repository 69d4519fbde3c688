"""Block-product engines: the curvature of one micro-batch times a block of vectors.

Each engine is a function ``(problem, micro_batch, V) -> out`` where ``V`` is an
``(m, D)`` block of vectors (one per row, contiguous) and ``out`` the ``(m, D)`` block of
products with the Hessian (or GGN) of that micro-batch's loss. Two strategies, as in
Pearlmutter (1994), "Fast exact multiplication by the Hessian", and Dangel et al. (2020,
BackPACK / 2023, curvlinops):

- ``graph``: build the double-backward graph once per micro-batch (loss, gradient with
  ``create_graph=True``), then one backward through it per vector of the block
  (reverse-over-reverse). Cost ~ one gradient + m double-backwards.
- ``vmap``: forward-over-reverse with ``torch.func`` (``jvp`` of ``grad``), vmapped over
  the block. Cost ~ m forward+backward passes fused into batched kernels.

GGN engines use ``J^T H_loss J`` (Schraudolph 2002): J v by the double-vjp trick (graph)
or ``jvp`` (vmap), the loss Hessian on the network outputs, then ``J^T`` by a vjp.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from curvsketch.operators.batches import call_model, model_arguments, tensor_leaves
from curvsketch.operators.samples import MicroBatch

__all__ = ["ENGINES", "Problem", "flatten_parts", "input_dtype_error"]


def input_dtype_error(err: BaseException, inputs: Any, where: str) -> TypeError | None:
    """A clear error for inputs whose dtype the model cannot take, else ``None``.

    Integer tensors are passed to the model unchanged (embedding layers take token ids)
    and floating ones are cast to the model's dtype, so a float model meeting integer
    inputs, or an embedding meeting floating token ids, raises a bare torch dtype error.
    """
    if not isinstance(err, RuntimeError):
        return None
    msg = str(err)
    first = msg.splitlines()[0] if msg else type(err).__name__
    leaves = list(tensor_leaves(inputs))
    ints = [
        f"inputs{p} ({t.dtype})"
        for p, t in leaves
        if not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)
    ]
    floats = [f"inputs{p} ({t.dtype})" for p, t in leaves if t.is_floating_point()]
    if floats and "indices" in msg and "scalar type" in msg:
        return TypeError(
            f"data: the model takes integer indices (e.g. token ids for an embedding) but the "
            f"inputs of {where} are floating: {', '.join(floats[:4])}: {first}. Pass the ids "
            "as an integer tensor, e.g. ids.long()"
        )
    if not ints or not any(w in msg for w in ("dtype", "type", "Long", "Int")):
        return None
    return TypeError(
        f"data: the model failed on the integer inputs of {where}: {', '.join(ints[:4])}: "
        f"{first}. Integer tensors are passed to the model unchanged (for embedding layers "
        "that take token ids); if the model expects real-valued inputs, convert them in "
        "data, e.g. X.to(torch.float64) (the model's dtype)"
    )


@dataclass
class Problem:
    """What an engine needs: the model, the loss, and the parameters to differentiate."""

    model: nn.Module
    loss_fn: Callable[[Any, Any], torch.Tensor]
    params: Sequence[torch.Tensor]
    names: Sequence[str]

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Split a flat ``(D,)`` vector into views shaped like the parameters."""
        out, offset = [], 0
        for p in self.params:
            n = p.numel()
            out.append(flat[offset : offset + n].view_as(p))
            offset += n
        return out

    def split_batched(self, block: torch.Tensor) -> list[torch.Tensor]:
        """Split an ``(m, D)`` block into ``(m, *p.shape)`` pieces."""
        out, offset = [], 0
        m = block.shape[0]
        for p in self.params:
            n = p.numel()
            out.append(block[:, offset : offset + n].reshape(m, *p.shape))
            offset += n
        return out

    def loss(
        self, outputs: Any, mb: MicroBatch, check_finite: bool = True, targets: Any = None
    ) -> torch.Tensor:
        """The micro-batch loss, checked to be a scalar (and finite, outside transforms).

        ``targets`` replaces ``mb.targets`` (the vmap engines pass them as dual tensors).
        """
        loss = self.loss_fn(outputs, mb.targets if targets is None else targets)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(
                f"loss_fn must return a scalar tensor, got {shape} at {mb.where()}; "
                "use reduction='mean' (or 'sum' and pass reduction='sum')"
            )
        if check_finite and not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at {mb.where()}; check the data and the model"
            )
        return loss.reshape(())

    def forward(self, mb: MicroBatch) -> Any:
        """Model outputs on a micro-batch: ``model(x)``, ``model(*x)`` or ``model(**x)``."""
        return call_model(self.model, mb.inputs)

    def check_forward(self, mb: MicroBatch) -> None:
        """A forward pass without gradients; integer-input dtype errors become clear ones."""
        try:
            with torch.no_grad():
                self.forward(mb)
        except RuntimeError as err:
            clear = input_dtype_error(err, mb.inputs, mb.where())
            if clear is not None:
                raise clear from err
            raise

    def functional(self, mb: MicroBatch) -> Callable[..., Any]:
        """``f(*params) -> outputs`` with the other parameters and buffers held fixed."""
        names = list(self.names)
        args, kwargs = model_arguments(mb.inputs)

        def f(*ps: torch.Tensor) -> Any:
            return torch.func.functional_call(
                self.model, dict(zip(names, ps, strict=True)), args, kwargs
            )

        return f


def _dual_targets(mb: MicroBatch) -> torch.Tensor | None:
    """Floating targets, to be given a zero tangent in forward-mode products.

    Without a tangent, forward-mode AD through ``F.mse_loss``'s backward writes into the
    targets' implicit zero tangent and fails ("ZeroTensors are immutable"); a materialised
    zero tangent computes the same product.
    """
    y = mb.targets
    return y if isinstance(y, torch.Tensor) and y.is_floating_point() else None


def flatten_parts(
    parts: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Concatenate per-parameter pieces into one flat vector (``None``: zeros)."""
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for g, p in zip(parts, params, strict=True)
        ]
    )


def _flat_batched(parts: Sequence[torch.Tensor], m: int) -> torch.Tensor:
    return torch.cat([g.reshape(m, -1) for g in parts], dim=1)


# ----------------------------------------------------------------------------- Hessian
def hessian_graph(problem: Problem, mb: MicroBatch, V: torch.Tensor) -> torch.Tensor:
    """Hessian block product, graph built once, one double-backward per vector."""
    params = list(problem.params)
    with torch.enable_grad():
        loss = problem.loss(problem.forward(mb), mb)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        keep = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        out = torch.zeros_like(V)
        if not keep:
            return out
        last = V.shape[0] - 1
        for j in range(V.shape[0]):
            vs = problem.split(V[j])
            hv = torch.autograd.grad(
                [grads[i] for i in keep],
                params,
                grad_outputs=[vs[i] for i in keep],
                retain_graph=j < last,
                allow_unused=True,
            )
            out[j] = flatten_parts(hv, params)
    return out


def hessian_graph_batched(problem: Problem, mb: MicroBatch, V: torch.Tensor) -> torch.Tensor:
    """Hessian block product, graph built once, one vmapped double-backward for the block."""
    params = list(problem.params)
    m = V.shape[0]
    with torch.enable_grad():
        loss = problem.loss(problem.forward(mb), mb)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        keep = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        if not keep:
            return torch.zeros_like(V)
        pieces = problem.split_batched(V)
        hv = torch.autograd.grad(
            [grads[i] for i in keep],
            params,
            grad_outputs=[pieces[i] for i in keep],
            is_grads_batched=True,
            allow_unused=True,
        )
    return _flat_batched(
        [
            torch.zeros(m, *p.shape, dtype=V.dtype, device=V.device) if h is None else h
            for h, p in zip(hv, params, strict=True)
        ],
        m,
    )


def hessian_vmap(problem: Problem, mb: MicroBatch, V: torch.Tensor) -> torch.Tensor:
    """Hessian block product by vmapped forward-over-reverse (``torch.func``)."""
    f = problem.functional(mb)
    primals = tuple(p.detach() for p in problem.params)
    k = len(primals)
    y = _dual_targets(mb)

    def loss_of(*args: torch.Tensor) -> torch.Tensor:
        targets = args[k] if y is not None else None
        return problem.loss(f(*args[:k]), mb, check_finite=False, targets=targets)

    grad_fn = torch.func.grad(loss_of, argnums=tuple(range(k)))
    extra_p = () if y is None else (y,)
    extra_t = () if y is None else (torch.zeros_like(y),)

    def hvp(*tangents: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.func.jvp(grad_fn, primals + extra_p, tangents + extra_t)[1]

    out = torch.func.vmap(hvp)(*problem.split_batched(V))
    return _flat_batched(out, V.shape[0])


# ----------------------------------------------------------------------------- GGN
def _loss_hessian_on_outputs(problem: Problem, outputs: torch.Tensor, mb: MicroBatch) -> Callable:
    """Return ``u -> H_loss u`` for the loss Hessian w.r.t. the network outputs."""
    out = outputs.detach().requires_grad_(True)
    with torch.enable_grad():
        g = torch.autograd.grad(problem.loss(out, mb), out, create_graph=True)[0]

    def apply(u: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(g, out, grad_outputs=u, retain_graph=True)[0]

    return apply


def ggn_graph(problem: Problem, mb: MicroBatch, V: torch.Tensor) -> torch.Tensor:
    """GGN block product J^T H_loss J v, graph built once per micro-batch."""
    params = list(problem.params)
    with torch.enable_grad():
        outputs = problem.forward(mb)
        if not isinstance(outputs, torch.Tensor):
            raise TypeError("GGNOperator: the model must return a single tensor of outputs")
        h_loss = _loss_hessian_on_outputs(problem, outputs, mb)
        dummy = torch.zeros_like(outputs, requires_grad=True)
        jt_dummy = torch.autograd.grad(
            outputs, params, grad_outputs=dummy, create_graph=True, allow_unused=True
        )
        keep = [i for i, g in enumerate(jt_dummy) if g is not None and g.requires_grad]
        out = torch.zeros_like(V)
        if not keep:
            return out
        for j in range(V.shape[0]):
            vs = problem.split(V[j])
            jv = torch.autograd.grad(
                [jt_dummy[i] for i in keep],
                dummy,
                grad_outputs=[vs[i] for i in keep],
                retain_graph=True,
            )[0]
            hjv = h_loss(jv)
            jthjv = torch.autograd.grad(
                outputs, params, grad_outputs=hjv, retain_graph=True, allow_unused=True
            )
            out[j] = flatten_parts(jthjv, params)
    return out


def ggn_vmap(problem: Problem, mb: MicroBatch, V: torch.Tensor) -> torch.Tensor:
    """GGN block product by vmapped jvp, loss Hessian on outputs, and vjp (``torch.func``)."""
    f = problem.functional(mb)
    primals = tuple(p.detach() for p in problem.params)
    outputs, vjp_fn = torch.func.vjp(f, *primals)
    if not isinstance(outputs, torch.Tensor):
        raise TypeError("GGNOperator: the model must return a single tensor of outputs")
    outputs = outputs.detach()
    y = _dual_targets(mb)

    def loss_out(o: torch.Tensor, *targets: torch.Tensor) -> torch.Tensor:
        return problem.loss(o, mb, check_finite=False, targets=targets[0] if targets else None)

    grad_out = torch.func.grad(loss_out)
    extra_p = () if y is None else (y,)
    extra_t = () if y is None else (torch.zeros_like(y),)

    def one(*tangents: torch.Tensor) -> tuple[torch.Tensor, ...]:
        jv = torch.func.jvp(f, primals, tangents)[1]
        hjv = torch.func.jvp(grad_out, (outputs, *extra_p), (jv, *extra_t))[1]
        return vjp_fn(hjv)

    out = torch.func.vmap(one)(*problem.split_batched(V))
    return _flat_batched(out, V.shape[0])


ENGINES: dict[str, dict[str, Callable[[Problem, MicroBatch, torch.Tensor], torch.Tensor]]] = {
    "hessian": {
        "graph": hessian_graph,
        "graph_batched": hessian_graph_batched,
        "vmap": hessian_vmap,
    },
    "ggn": {"graph": ggn_graph, "vmap": ggn_vmap},
}
