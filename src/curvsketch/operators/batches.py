"""The forms ``data`` can take, and how one batch is read (inputs, targets, samples).

``data`` is either **one pair** ``(inputs, targets)`` or a **sequence / re-iterable of
pairs** (a list, a ``DataLoader`` without shuffling). In a pair,

- ``inputs`` is a tensor (``model(x)``), a tuple or list of tensors (``model(*x)``,
  positional; a ``DataLoader`` turns tuples into lists) or a dict of tensors
  (``model(**x)``, keyword arguments);
- ``targets`` is whatever ``loss_fn(outputs, targets)`` takes: a tensor, or a tuple /
  dict of tensors.

Every tensor in a batch has the samples along its first dimension. A list is always a
sequence of batches. A 2-tuple is read as **one pair** when its second item is a tensor (a
batch is never a bare tensor) or its first item is a tensor or a dict; otherwise (both
items are pairs themselves) it is read as **two batches**. So ``(X, y)``, ``((a, b), y)``
and ``({"ids": t}, y)`` are pairs, ``[(X1, y1), (X2, y2)]`` and ``((X1, y1), (X2, y2))``
are two batches; to pass one pair whose inputs *and* targets are tuples, wrap it in a
list: ``[((a, b), (t1, t2))]``.

Hugging-Face-style batches (one dict holding the inputs and the labels) become
``(inputs, targets)`` pairs with :func:`dict_batches`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "DictBatches",
    "call_model",
    "dict_batches",
    "is_pair",
    "model_arguments",
    "num_samples",
    "slice_samples",
    "tensor_leaves",
    "to_device",
]


def tensor_leaves(x: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(path, tensor)`` for every tensor in a nest of tuples, lists and dicts."""
    if isinstance(x, torch.Tensor):
        yield path, x
    elif isinstance(x, (tuple, list)):
        for i, v in enumerate(x):
            yield from tensor_leaves(v, f"{path}[{i}]")
    elif isinstance(x, Mapping):
        for k, v in x.items():
            yield from tensor_leaves(v, f"{path}[{k!r}]")


def num_samples(x: Any, what: str = "inputs") -> int:
    """The number of samples (leading size) shared by every tensor of ``x``.

    Args:
        x: a tensor, or a nest of tuples / lists / dicts holding tensors.
        what: name used in error messages (e.g. ``"batch 2 inputs"``).

    Returns:
        The size of the first dimension of the tensors.

    Raises:
        ValueError: a 0-d tensor, or tensors that disagree on the number of samples.
        TypeError: no tensor at all in ``x``.
    """
    sizes: dict[str, int] = {}
    for path, t in tensor_leaves(x):
        if t.ndim == 0:
            raise ValueError(
                f"data: {what}{path} is a 0-d tensor; every tensor needs a leading sample dimension"
            )
        sizes[path] = int(t.shape[0])
    if not sizes:
        raise TypeError(
            f"data: cannot tell the number of samples of {what} of type {type(x).__name__}; "
            "pass tensors (or tuples/lists/dicts of tensors) with a leading sample dimension"
        )
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{what}{p or ''} has {n}" for p, n in sizes.items())
        raise ValueError(f"data: the tensors of {what} disagree on the number of samples: {listed}")
    return next(iter(sizes.values()))


def slice_samples(x: Any, start: int, stop: int) -> Any:
    """Samples ``[start:stop)`` of every tensor in ``x`` (other values unchanged)."""
    if isinstance(x, torch.Tensor):
        return x[start:stop]
    if isinstance(x, tuple):
        return tuple(slice_samples(t, start, stop) for t in x)
    if isinstance(x, list):
        return [slice_samples(t, start, stop) for t in x]
    if isinstance(x, Mapping):
        return {k: slice_samples(v, start, stop) for k, v in x.items()}
    return x


def to_device(x: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Move every tensor of ``x`` to ``device``; floating tensors also to ``dtype``.

    Integer and boolean tensors keep their dtype (token ids, class labels, masks).
    """
    if isinstance(x, torch.Tensor):
        if x.is_floating_point():
            return x.to(device=device, dtype=dtype)
        return x.to(device=device)
    if isinstance(x, tuple):
        return tuple(to_device(t, device, dtype) for t in x)
    if isinstance(x, list):
        return [to_device(t, device, dtype) for t in x]
    if isinstance(x, Mapping):
        return {k: to_device(v, device, dtype) for k, v in x.items()}
    return x


def model_arguments(inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` the model is called with: ``*x`` for tuples/lists, ``**x`` for dicts."""
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    if isinstance(inputs, Mapping):
        bad = [k for k in inputs if not isinstance(k, str)]
        if bad:
            raise TypeError(
                f"data: dict inputs are passed as keyword arguments model(**inputs), so their keys "
                f"must be strings; got {bad[:3]!r}"
            )
        return (), dict(inputs)
    return (inputs,), {}


def call_model(model: nn.Module, inputs: Any) -> Any:
    """``model(x)``, ``model(*x)`` (tuple/list inputs) or ``model(**x)`` (dict inputs)."""
    args, kwargs = model_arguments(inputs)
    return model(*args, **kwargs)


def _is_tensor_or_dict(x: Any) -> bool:
    return isinstance(x, (torch.Tensor, Mapping))


def is_pair(data: Any) -> bool:
    """Whether ``data`` is one ``(inputs, targets)`` pair rather than a sequence of batches.

    Only a 2-tuple can be a pair (a list is always a sequence of batches). It is one pair
    when its second item is a tensor (a batch is never a bare tensor) or its first item is
    a tensor or a dict (a batch is a pair, not a tensor or a dict); a 2-tuple of two pairs
    is read as two batches.
    """
    if not (isinstance(data, tuple) and len(data) == 2):
        return False
    x, y = data
    return isinstance(y, torch.Tensor) or _is_tensor_or_dict(x)


def describe_reading(data: Any) -> str:
    """A hint appended to batch errors: how ``data`` was read, and how to say otherwise."""
    if isinstance(data, list):
        return (
            "; data (a list) is read as a sequence of (inputs, targets) batches: to pass one "
            "pair, give a tuple (inputs, targets)"
        )
    if isinstance(data, tuple) and len(data) == 2:
        return (
            "; data (a 2-tuple whose second item is not a tensor and whose first item is not a "
            "tensor or dict) was read as 2 batches: to pass one (inputs, targets) pair with "
            "tuple targets, wrap it in a list: [(inputs, targets)]"
        )
    return ""


def batch_form_error(i: int, batch: Any, data: Any) -> ValueError:
    """The error for a batch that is not an ``(inputs, targets)`` pair."""
    if isinstance(batch, Mapping):
        keys = list(batch)[:6]
        return ValueError(
            f"data: batch {i} is a dict (keys {keys}); a dict holding inputs and labels (a "
            "Hugging-Face-style batch) must be split into (inputs, targets): pass "
            "curvsketch.operators.dict_batches(data, target_key='labels')"
        )
    length = f" of length {len(batch)}" if isinstance(batch, Sequence) else ""
    return ValueError(
        f"data: batch {i} must be an (inputs, targets) pair, got {type(batch).__name__}{length}"
        + describe_reading(data)
    )


def check_data_form(data: Any) -> Iterable:
    """Return the batches of ``data`` (a list holding the pair, for one pair).

    Raises:
        TypeError: a one-shot iterator, a dict, or an unknown form.
    """
    if is_pair(data):
        return [data]
    if isinstance(data, Mapping):
        raise TypeError(
            f"data: got a dict (keys {list(data)[:6]}); pass (inputs, targets) pairs. For a "
            "Hugging-Face-style batch holding inputs and labels use "
            "curvsketch.operators.dict_batches(data, target_key='labels')"
        )
    if isinstance(data, Iterator):
        raise TypeError(
            "data: got a one-shot iterator (e.g. a generator); every product reads the data "
            "again, so pass a list of (inputs, targets) batches or a DataLoader"
        )
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, torch.Tensor)):
        return data
    raise TypeError(
        f"data: expected an (inputs, targets) pair or a sequence of (inputs, targets) batches, "
        f"got {type(data).__name__}"
    )


class DictBatches:
    """A re-iterable view of dict batches as ``(inputs, targets)`` pairs (see :func:`dict_batches`).

    Attributes:
        source: the wrapped re-iterable of dicts.
        target_key: the key holding the targets.
        input_keys: the keys passed to the model (``None``: every other key).
    """

    def __init__(self, source: Iterable, target_key: str, input_keys: Sequence[str] | None) -> None:
        self.source = source
        self.target_key = target_key
        self.input_keys = None if input_keys is None else tuple(input_keys)

    def _split(self, i: int, batch: Any) -> tuple[dict[str, Any], Any]:
        if not isinstance(batch, Mapping):
            raise ValueError(
                f"dict_batches: batch {i} is a {type(batch).__name__}, expected a dict holding "
                f"the inputs and {self.target_key!r}"
            )
        if self.target_key not in batch:
            raise ValueError(
                f"dict_batches: batch {i} has no key {self.target_key!r} (keys {list(batch)}); "
                "pass target_key= the key of the labels"
            )
        keys = self.input_keys or [k for k in batch if k != self.target_key]
        missing = [k for k in keys if k not in batch]
        if missing:
            raise ValueError(
                f"dict_batches: batch {i} lacks input keys {missing} (keys {list(batch)})"
            )
        return {k: batch[k] for k in keys}, batch[self.target_key]

    def __iter__(self) -> Iterator[tuple[dict[str, Any], Any]]:
        for i, batch in enumerate(self.source):
            yield self._split(i, batch)

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"DictBatches({type(self.source).__name__}, target_key={self.target_key!r}, "
            f"input_keys={self.input_keys!r})"
        )


def dict_batches(
    data: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    *,
    target_key: str = "labels",
    input_keys: Sequence[str] | None = None,
) -> DictBatches:
    """Turn Hugging-Face-style batches (dicts holding inputs and labels) into pairs.

    Each dict ``{"input_ids": ..., "attention_mask": ..., "labels": ...}`` becomes
    ``({"input_ids": ..., "attention_mask": ...}, labels)``: the model is called as
    ``model(**inputs)`` and ``loss_fn(outputs, labels)``. The labels are kept out of the
    model's arguments, so a Hugging Face model does not compute its own loss; give a
    ``loss_fn`` that reads the logits, e.g. for a causal LM (labels shifted by one inside
    the model in HF, so shift them here too)::

        def loss_fn(out, labels):
            logits = out.logits[:, :-1]
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)

        H = HessianOperator(model, loss_fn, dict_batches(loader),
                            num_loss_terms=count_targets(-100, shift=1))

    For :class:`~curvsketch.GGNOperator` the model must return the logits tensor itself:
    wrap it, e.g. ``forward(self, **kw): return self.inner(**kw).logits``.

    Args:
        data: one dict, or a re-iterable of dicts (a list, a ``DataLoader``); not a
            one-shot iterator.
        target_key: the key holding the targets.
        input_keys: the keys passed to the model (default: every key but ``target_key``).

    Returns:
        A re-iterable of ``(inputs_dict, targets)`` pairs that reads ``data`` anew on each pass.

    Raises:
        TypeError: ``data`` is a one-shot iterator or not iterable.
        ValueError: ``target_key`` in ``input_keys``.
    """
    if not isinstance(target_key, str):
        raise TypeError(f"dict_batches: target_key must be a string, got {target_key!r}")
    if input_keys is not None and target_key in input_keys:
        raise ValueError(f"dict_batches: target_key {target_key!r} is also in input_keys")
    if isinstance(data, Mapping):
        data = [data]
    if isinstance(data, Iterator):
        raise TypeError(
            "dict_batches: got a one-shot iterator (e.g. a generator); every product reads the "
            "data again, so pass a list of dicts or a DataLoader"
        )
    if not isinstance(data, Iterable):
        raise TypeError(
            f"dict_batches: expected a dict or a re-iterable of dicts, got {type(data).__name__}"
        )
    return DictBatches(data, target_key, input_keys)
