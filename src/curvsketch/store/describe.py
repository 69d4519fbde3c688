"""Stable text descriptions of a curvature operator's model and loss, for the run identity.

A description must be equal in every process that builds the same operator (no memory
addresses, no device) and differ when a visible setting differs: ``repr(model)`` names
every layer and activation module; a loss is described by its qualified name, the
arguments of a ``functools.partial``, and the public settings of a loss module
(``reduction``, ``ignore_index``, ``label_smoothing``, ... — ``repr(nn.CrossEntropyLoss(
label_smoothing=0.1))`` shows none of them). What a description cannot see (an activation
called as a plain function inside ``forward``, a lambda's closure) the probe product
(:mod:`curvsketch.store.probe`) does.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any

import torch
from torch import nn

__all__ = ["describe_callable", "describe_model", "short_hash"]

#: Longest description stored as is; longer ones keep their head and a hash of the rest.
MAX_CHARS = 20_000
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_SIMPLE = (bool, int, float, str, type(None))


def short_hash(text: str) -> str:
    """First 16 hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _clip(text: str) -> str:
    text = _ADDRESS.sub("", text)
    if len(text) <= MAX_CHARS:
        return text
    return (
        f"{text[: MAX_CHARS // 2]}\n... (sha256 of all {len(text)} characters: {short_hash(text)})"
    )


def _tensor_text(t: torch.Tensor) -> str:
    data = t.detach().cpu().contiguous()
    if data.dtype == torch.bfloat16:
        data = data.to(torch.float32)
    digest = hashlib.sha256(data.numpy().tobytes()).hexdigest()[:16]
    return f"tensor({str(t.dtype).replace('torch.', '')}{list(t.shape)}, sha256 {digest})"


def _value(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return _tensor_text(x)
    if isinstance(x, _SIMPLE):
        return repr(x)
    if isinstance(x, list | tuple):
        inner = ", ".join(_value(v) for v in x)
        return f"[{inner}]" if isinstance(x, list) else f"({inner})"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {_value(v)}" for k, v in sorted(x.items(), key=str)) + "}"
    if callable(x):
        return describe_callable(x)
    return _ADDRESS.sub("", repr(x))


def _settings(obj: Any) -> str:
    """Public simple attributes (and a loss module's tensors) of ``obj``, sorted."""
    items = []
    for k, v in sorted(vars(obj).items()):
        if k.startswith("_") or k == "training":
            continue
        if isinstance(v, (*_SIMPLE, torch.Tensor)) or (
            isinstance(v, list | tuple) and all(isinstance(e, _SIMPLE) for e in v)
        ):
            items.append(f"{k}={_value(v)}")
    if isinstance(obj, nn.Module):
        for name, t in sorted([*obj.named_parameters(), *obj.named_buffers()]):
            items.append(f"{name}={_value(t)}")
    return ", ".join(items)


def describe_callable(fn: Any) -> str:
    """A stable description of a loss function (or any callable).

    Functions: ``module.qualname``; ``functools.partial``: the function and its
    arguments; modules and other callable objects: their ``repr`` and public settings.

    Args:
        fn: the callable.
    """
    if isinstance(fn, functools.partial):
        args = [_value(a) for a in fn.args]
        args += [f"{k}={_value(v)}" for k, v in sorted(fn.keywords.items())]
        return _clip(f"functools.partial({describe_callable(fn.func)}, {', '.join(args)})")
    if isinstance(fn, nn.Module):
        settings = _settings(fn)
        return _clip(repr(fn) + (f" {{{settings}}}" if settings else ""))
    qualname = getattr(fn, "__qualname__", None)
    if isinstance(qualname, str):
        module = getattr(fn, "__module__", None) or ""
        return f"{module}.{qualname}" if module else qualname
    cls = type(fn)
    settings = _settings(fn) if hasattr(fn, "__dict__") else ""
    return _clip(f"{cls.__module__}.{cls.__qualname__}" + (f" {{{settings}}}" if settings else ""))


def describe_model(model: nn.Module) -> str:
    """``repr(model)`` without memory addresses (long ones clipped, with a hash)."""
    return _clip(repr(model))
