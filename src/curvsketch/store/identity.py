"""The identity of a sketching run, and the operator fingerprint it contains.

A measurement store may only ever hold blocks of *one* run: the same operator, test
operators (noise kind and seed), sizes and block layout. Mixing blocks of two runs would
give a sketch that belongs to neither, silently. :class:`RunIdentity` is written into a
store when it is created and compared field by field whenever the store is reopened.

The operator's part (:func:`fingerprint`) holds hashes of what can be hashed (weights,
buffers, data, a dense matrix), descriptions of the model and the loss
(:mod:`.describe`), and the digest of one probe product ``H v``
(:mod:`.probe`), which sees what the others cannot (an activation called as a function,
a loss's closure). The probe is compared to rounding, everything else exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from curvsketch.operators.batches import tensor_leaves
from curvsketch.store.describe import describe_callable, describe_model, short_hash
from curvsketch.store.probe import probe_differences, probe_digest

__all__ = ["RunIdentity", "StoreMismatchError", "fingerprint", "needs_probe"]

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
            # every tensor of a tuple / dict input by its bytes (a repr elides large ones)
            for path, t in tensor_leaves(part):
                h.update(path.encode())
                _hash_tensor(h, t)
            if not isinstance(part, torch.Tensor | tuple | list | dict):
                h.update(repr(part).encode())  # non-tensor inputs: their repr is the best we have
        h.update(f"{mb.start}:{mb.stop}:{mb.weight!r}".encode())
    return h.hexdigest()[:32]


def _describe_operator(op: Any, out: dict[str, Any]) -> None:
    """Fill the model, loss and settings fields of a curvature operator's fingerprint."""
    model = getattr(op, "model", None)
    if isinstance(model, torch.nn.Module):
        out["model"] = describe_model(model)
        buffers = list(model.named_buffers())
        if buffers:
            h = hashlib.sha256()
            for name, b in buffers:
                h.update(name.encode())
                _hash_tensor(h, b)
            out["buffers"] = h.hexdigest()[:32]
    loss = getattr(op, "loss_fn", None)
    if callable(loss):
        out["loss"] = describe_callable(loss)
    names = getattr(op, "param_names", None)
    if isinstance(names, list | tuple) and names:
        out["param_names"] = short_hash("\n".join(map(str, names)))
    samples = getattr(op, "samples", None)
    reduction = getattr(samples, "reduction", None)
    if isinstance(reduction, str):
        out["reduction"] = reduction
    for holder in (op, samples):
        terms = getattr(holder, "num_loss_terms", None)
        if callable(terms):
            out["loss_terms"] = describe_callable(terms)


def fingerprint(op: Any, *, probe: bool = True) -> dict[str, Any]:
    """A JSON-serialisable fingerprint of an operator: what makes its products what they are.

    Always ``dim``, ``dtype`` and ``kind`` (the operator's class). ``params`` is a SHA-256
    of ``op.parameter_vector()`` (curvature operators: the network weights), ``buffers``
    one of the model's buffers (e.g. batch-norm statistics), ``data`` one of
    ``op.samples`` (inputs, targets and micro-batch weights), ``matrix`` one of
    ``op.matrix`` (dense operators up to :data:`MAX_HASHED_ELEMENTS` entries). ``model``
    is ``repr(op.model)``, ``loss`` a description of ``op.loss_fn`` (:mod:`.describe`),
    ``reduction`` the samples' reduction, ``param_names`` a hash of the differentiated
    parameters' names, ``loss_terms`` a description of a ``num_loss_terms`` callable.
    ``probe`` is the digest of one product ``H v`` (:func:`.probe.probe_digest`,
    compared to rounding): computed unless ``matrix`` is hashed (the hash already fixes
    every product) or ``probe=False``. Fields the operator cannot provide are ``None``.

    Args:
        op: an operator (``.shape``, ``.dtype``, ``@``).
        probe: compute the probe product (one product of ``op``); ``False`` leaves
            ``probe`` ``None`` (to be filled by :meth:`RunIdentity.with_probe`).

    Returns:
        ``{"dim", "dtype", "kind", "params", "buffers", "data", "matrix", "model",
        "loss", "reduction", "param_names", "loss_terms", "probe"}``.
    """
    out: dict[str, Any] = {
        "dim": int(op.shape[0]),
        "dtype": str(op.dtype).replace("torch.", ""),
        "kind": type(op).__name__,
        "params": None,
        "buffers": None,
        "data": None,
        "matrix": None,
        "model": None,
        "loss": None,
        "reduction": None,
        "param_names": None,
        "loss_terms": None,
        "probe": None,
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
    _describe_operator(op, out)
    if probe and needs_probe(out):
        out["probe"] = probe_digest(op)
    return out


def needs_probe(fp: dict[str, Any]) -> bool:
    """Whether a fingerprint needs the probe product (no hash of the whole matrix)."""
    return fp.get("matrix") is None


@dataclass(frozen=True)
class RunIdentity:
    """Everything that determines the measurements of a sketching run, block by block.

    Attributes:
        operator: :func:`fingerprint` of the operator.
        recovery: the recovery the measurements are for (``"singlepass"``, ``"krylov"``
            or ``"hmt"``).
        noise: test-operator kind.
        seed: user seed of the test operators.
        outer: outer sketch size ``o`` (the eigenpairs).
        inner: ``"singlepass"``: the inner sketch size ``s`` (= its products);
            ``"krylov"``: the basis size ``m`` (= its products); ``"hmt"``: the products of
            one pass (``= o``).
        block_size: products per block (blocks are ``[b·B, (b+1)·B)``); for ``"krylov"``
            the Krylov block.
        which: ``"LM"``, ``"LA"`` or ``"SA"`` (stores written before it existed: ``"LM"``).
        power_iters: subspace iterations of ``"hmt"`` (else 0).
    """

    operator: dict[str, Any]
    recovery: str
    noise: str
    seed: int
    outer: int
    inner: int
    block_size: int
    which: str = "LM"
    power_iters: int = 0

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
        """Inverse of :meth:`to_dict`; unknown keys are an error, fields added since a store
        was written (``which``, ``power_iters``) take their defaults."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"run identity: unknown fields {sorted(unknown)}")
        return cls(**{k: d[k] for k in names if k in d})

    def with_probe(self, digest: dict[str, Any] | None) -> RunIdentity:
        """This identity with the operator's ``probe`` digest set."""
        return replace(self, operator={**self.operator, "probe": digest})

    def differences(self, other: RunIdentity, *, probe: bool = True) -> list[str]:
        """Human-readable ``field: other (store) != this (this run)`` lines.

        Operator fields are flattened (``operator.model``); the probe digest is compared
        to rounding (:func:`.probe.probe_differences`), the rest exactly; long texts show
        their first differing line.

        Args:
            other: the identity read from the store.
            probe: compare the probe digests too.
        """
        mine, theirs = _flatten(self.to_dict()), _flatten(other.to_dict())
        mine_probe, their_probe = (
            mine.pop("operator.probe", None),
            theirs.pop("operator.probe", None),
        )
        out = [
            f"{k}: {_show(theirs.get(k), mine.get(k))}"
            for k in sorted(set(mine) | set(theirs))
            if mine.get(k) != theirs.get(k)
        ]
        why = probe_differences(their_probe, mine_probe) if probe else None
        if why:
            out.append(f"operator.probe: {why}")
        return out

    def check_matches(self, stored: RunIdentity, where: str, *, probe: bool = True) -> None:
        """Raise :class:`StoreMismatchError` unless ``stored`` equals this identity.

        Args:
            stored: the identity read from the store.
            where: the store's location, for the message.
            probe: compare the probe digests too (``False``: every other field only).
        """
        diff = self.differences(stored, probe=probe)
        if diff:
            raise StoreMismatchError(
                f"the measurement store {where} holds another run; differing fields: "
                + "; ".join(diff)
                + ("" if probe else " (the probe product H·v is compared once these agree)")
                + ". Use another store path for this run, or delete the store to start over"
            )


def _show(stored: Any, mine: Any) -> str:
    """``stored (store) != mine (this run)``; multi-line texts by their first differing line."""
    if isinstance(stored, str) and isinstance(mine, str) and ("\n" in stored + mine):
        a, b = stored.splitlines(), mine.splitlines()
        n = next(
            (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )
        la = a[n].strip() if n < len(a) else "<end>"
        lb = b[n].strip() if n < len(b) else "<end>"
        return f"line {n + 1}: {la!r} (store) != {lb!r} (this run)"
    return f"{stored!r} (store) != {mine!r} (this run)"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "probe":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
