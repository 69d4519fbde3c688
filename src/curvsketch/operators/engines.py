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

from curvsketch.operators.samples import MicroBatch

__all__ = ["ENGINES", "Problem", "engine_names"]


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

    def loss(self, outputs: Any, mb: MicroBatch, check_finite: bool = True) -> torch.Tensor:
        """The micro-batch loss, checked to be a scalar (and finite, outside transforms)."""
        loss = self.loss_fn(outputs, mb.targets)
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
        """Model outputs on a micro-batch (inputs unpacked when given as a tuple)."""
        x = mb.inputs
        return self.model(*x) if isinstance(x, tuple) else self.model(x)

    def functional(self, mb: MicroBatch) -> Callable[..., Any]:
        """``f(*params) -> outputs`` with the other parameters and buffers held fixed."""
        names = list(self.names)

        def f(*ps: torch.Tensor) -> Any:
            x = mb.inputs
            args = x if isinstance(x, tuple) else (x,)
            return torch.func.functional_call(self.model, dict(zip(names, ps, strict=True)), args)

        return f


def _flat(parts: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> torch.Tensor:
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
            out[j] = _flat(hv, params)
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

    def loss_of(*ps: torch.Tensor) -> torch.Tensor:
        return problem.loss(f(*ps), mb, check_finite=False)

    grad_fn = torch.func.grad(loss_of, argnums=tuple(range(len(primals))))

    def hvp(*tangents: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.func.jvp(grad_fn, primals, tangents)[1]

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
            out[j] = _flat(jthjv, params)
    return out


def ggn_vmap(problem: Problem, mb: MicroBatch, V: torch.Tensor) -> torch.Tensor:
    """GGN block product by vmapped jvp, loss Hessian on outputs, and vjp (``torch.func``)."""
    f = problem.functional(mb)
    primals = tuple(p.detach() for p in problem.params)
    outputs, vjp_fn = torch.func.vjp(f, *primals)
    if not isinstance(outputs, torch.Tensor):
        raise TypeError("GGNOperator: the model must return a single tensor of outputs")
    outputs = outputs.detach()

    def loss_out(o: torch.Tensor) -> torch.Tensor:
        return problem.loss(o, mb, check_finite=False)

    def one(*tangents: torch.Tensor) -> tuple[torch.Tensor, ...]:
        jv = torch.func.jvp(f, primals, tangents)[1]
        hjv = torch.func.jvp(torch.func.grad(loss_out), (outputs,), (jv,))[1]
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


def engine_names(kind: str) -> list[str]:
    """Names of the engines available for ``kind`` (``"hessian"`` or ``"ggn"``)."""
    return list(ENGINES[kind])
