"""Shared test helpers: small float64 models and dense oracles built with torch.func."""

from __future__ import annotations

import itertools

import torch
from torch import nn


def flat_params(params):
    """Concatenate parameters into one detached vector."""
    return torch.cat([p.detach().reshape(-1) for p in params])


def _unflatten(vec, params):
    out, o = [], 0
    for p in params:
        out.append(vec[o : o + p.numel()].view_as(p))
        o += p.numel()
    return out


def oracle_hessian(model, loss_fn, X, y, params=None):
    """Dense Hessian of loss_fn(model(X), y) w.r.t. the concatenated params (torch.func)."""
    named = dict(model.named_parameters())
    params = list(model.parameters()) if params is None else list(params)
    names = [n for n, p in named.items() if any(p is q for q in params)]
    names = sorted(names, key=lambda n: next(i for i, q in enumerate(params) if q is named[n]))

    def f(v):
        return loss_fn(
            torch.func.functional_call(
                model, dict(zip(names, _unflatten(v, params), strict=True)), (X,)
            ),
            y,
        )

    was = model.training
    model.eval()
    try:
        return torch.func.hessian(f)(flat_params(params))
    finally:
        model.train(was)


def oracle_ggn(model, loss_fn, X, y):
    """Dense GGN Jᵀ H_loss J of loss_fn(model(X), y) (torch.func jacobian and hessian)."""
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]

    def out(v):
        return torch.func.functional_call(
            model, dict(zip(names, _unflatten(v, params), strict=True)), (X,)
        )

    model.eval()
    theta = flat_params(params)
    J = torch.func.jacrev(out)(theta)  # (N, C, D)
    o = out(theta).detach()
    HL = torch.func.hessian(lambda z: loss_fn(z, y))(o)  # (N, C, N, C)
    Jm = J.reshape(-1, J.shape[-1])
    return Jm.T @ HL.reshape(Jm.shape[0], Jm.shape[0]) @ Jm


def tanh_mlp(seed=0, sizes=(6, 8, 8, 3)):
    """A small float64 tanh MLP."""
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).double()


def small_cnn(seed=0):
    """A small float64 CNN with batch-norm and pooling, for 1x8x8 inputs and 4 classes."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4, 4),
    ).double()
    # give batch-norm non-trivial running statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(32, 1, 8, 8, dtype=torch.float64))
    model.eval()
    return model


def classification_data(n=40, d=6, c=3, seed=0, shape=None):
    """Random inputs and integer labels in float64."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, *(shape or (d,)), generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=g)
    return X, y
