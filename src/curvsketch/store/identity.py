"""The identity of a sketching run, and the operator fingerprint it contains.

A measurement store may only ever hold blocks of *one* run: the same operator, test
operators (noise kind and seed), sizes and block layout. Mixing blocks of two runs would
give a sketch that belongs to neither, silently. :class:`RunIdentity` is written into a
store when it is created and compared field by field whenever the store is reopened.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

__all__ = ["RunIdentity", "StoreMismatchError", "fingerprint"]

#: Dense matrices up to this many entries are hashed whole; larger ones only by shape.
MAX_HASHED_ELEMENTS = 50_000_000


class StoreMismatchError(ValueError):
    """A store holds measurements of another run than the one asked for."""


def _hash_tensor(h: Any, x: Any) -> None:
    """Feed the dtype, shape and bytes of a tensor (or array) into ``h``."""
    t = torch.as_tensor(x).detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.dtype == torch.bfloat16:
        t = t.to(torch.float32)
    h.update(t.numpy().tobytes())


def _hash_data(op: Any) -> str | None:
    """Hash the samples of a curvature operator (inputs and targets), if it exposes them."""
    samples = getattr(op, "samples", None)
    if samples is None or not callable(getattr(samples, "iterate", None)):
        return None
    h = hashlib.sha256()
    for mb in samples.iterate(torch.device("cpu"), op.dtype):
        for part in (mb.inputs, mb.targets):
            if isinstance(part, torch.Tensor):
                _hash_tensor(h, part)
            else:  # non-tensor inputs: their repr is the best we have
                h.update(repr(part).encode())
        h.update(f"{mb.start}:{mb.stop}:{mb.weight!r}".encode())
    return h.hexdigest()[:32]


def fingerprint(op: Any) -> dict[str, Any]:
    """A JSON-serialisable fingerprint of an operator: what makes its products what they are.

    Always ``dim`` and ``dtype``; ``params`` is a SHA-256 of ``op.parameter_vector()``
    (curvature operators: the network weights), ``data`` one of ``op.samples`` (inputs,
    targets and micro-batch weights), ``matrix`` one of ``op.matrix`` (dense operators up
    to :data:`MAX_HASHED_ELEMENTS` entries). Fields the operator cannot provide are
    ``None``: two such operators of equal ``dim`` and ``dtype`` are indistinguishable, so a
    store path must then not be shared between different operators.

    Args:
        op: an operator (``.shape``, ``.dtype``).

    Returns:
        ``{"dim", "dtype", "kind", "params", "data", "matrix"}``.
    """
    out: dict[str, Any] = {
        "dim": int(op.shape[0]),
        "dtype": str(op.dtype).replace("torch.", ""),
        "kind": type(op).__name__,
        "params": None,
        "data": None,
        "matrix": None,
    }
    if callable(getattr(op, "parameter_vector", None)):
        h = hashlib.sha256()
        _hash_tensor(h, op.parameter_vector())
        out["params"] = h.hexdigest()[:32]
    out["data"] = _hash_data(op)
    matrix = getattr(op, "matrix", None)
    if (
        isinstance(matrix, torch.Tensor | np.ndarray)
        and matrix.size
        and (int(np.prod(matrix.shape)) <= MAX_HASHED_ELEMENTS)
    ):
        h = hashlib.sha256()
        _hash_tensor(h, matrix)
        out["matrix"] = h.hexdigest()[:32]
    return out


@dataclass(frozen=True)
class RunIdentity:
    """Everything that determines the measurements of a sketching run, block by block.

    Attributes:
        operator: :func:`fingerprint` of the operator.
        recovery: the recovery the measurements are for (``"singlepass"``).
        noise: test-operator kind.
        seed: user seed of the test operators.
        outer: outer sketch size ``o``.
        inner: inner sketch size ``s`` (= number of products for ``"singlepass"``).
        block_size: products per block (blocks are ``[b·B, (b+1)·B)``).
    """

    operator: dict[str, Any]
    recovery: str
    noise: str
    seed: int
    outer: int
    inner: int
    block_size: int

    @property
    def dim(self) -> int:
        """``D``."""
        return int(self.operator["dim"])

    @property
    def dtype(self) -> str:
        """dtype name of the measurements, e.g. ``"float64"``."""
        return str(self.operator["dtype"])

    @property
    def num_blocks(self) -> int:
        """Number of blocks of products."""
        return -(-self.inner // self.block_size)

    def block_range(self, block: int) -> tuple[int, int]:
        """Product indices ``[i0, i1)`` of ``block``."""
        if not 0 <= block < self.num_blocks:
            raise IndexError(f"block {block} is outside [0, {self.num_blocks})")
        i0 = block * self.block_size
        return i0, min(i0 + self.block_size, self.inner)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunIdentity:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"run identity: unknown fields {sorted(unknown)}")
        return cls(**{k: d[k] for k in names})

    def differences(self, other: RunIdentity) -> list[str]:
        """Human-readable ``field: this != other`` lines (operator fields flattened)."""
        mine, theirs = _flatten(self.to_dict()), _flatten(other.to_dict())
        return [
            f"{k}: {theirs.get(k)!r} (store) != {mine.get(k)!r} (this run)"
            for k in sorted(set(mine) | set(theirs))
            if mine.get(k) != theirs.get(k)
        ]

    def check_matches(self, stored: RunIdentity, where: str) -> None:
        """Raise :class:`StoreMismatchError` unless ``stored`` equals this identity.

        Args:
            stored: the identity read from the store.
            where: the store's location, for the message.
        """
        diff = self.differences(stored)
        if diff:
            raise StoreMismatchError(
                f"the measurement store {where} holds another run; differing fields: "
                + "; ".join(diff)
                + ". Use another store path for this run, or delete the store to start over"
            )


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
