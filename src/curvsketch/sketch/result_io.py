"""Files of result objects: ``torch.save`` of plain tensors and dicts, read back with
``weights_only=True`` and checked, so that a bad file gives one error naming it.

The payload is ``{"type", "version", "tensors", "meta", "timings"}``; ``type`` is the class
name (``"EighResult"`` or ``"SvdResult"``). Reading never unpickles arbitrary objects: a
file holding anything else is refused, and the message never suggests
``weights_only=False`` (which would run code from the file).
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import MISSING, fields
from typing import Any

import torch

__all__ = ["FORMAT_VERSION", "ResultFileError", "build", "save"]

FORMAT_VERSION = 1


def save(obj: Any, kind: str, path: str | os.PathLike[str], tensors: list[str]) -> None:
    meta = {
        f.name: getattr(obj, f.name)
        for f in fields(obj)
        if f.name not in tensors and f.name != "timings"
    }
    payload = {
        "type": kind,
        "version": FORMAT_VERSION,
        "tensors": {name: getattr(obj, name) for name in tensors},
        "meta": meta,
        "timings": dict(obj.timings),
    }
    torch.save(payload, os.fspath(path))


class ResultFileError(ValueError):
    """A file given to :meth:`EighResult.load` / :meth:`SvdResult.load` is not such a result.

    Attributes:
        path: the file.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(f"{path}: {problem}")


def _read(path: str, map_location: Any, kind: str) -> Any:
    """``torch.load(path, weights_only=True)``; every failure becomes one clear error."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file (expected a {kind} written by .save)")
    if os.path.isdir(path):
        raise ResultFileError(path, f"is a directory, not a {kind} file written by .save")
    written = f"expected a file written by {kind}.save"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notice on foreign files
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head != b"PK" and head[:1] != b"\x80":  # neither a torch zip nor a pickle
            raise ResultFileError(path, f"is not a torch file; {written}") from None
        problem = (
            "holds Python objects other than tensors and plain containers, so it was not "
            f"written by {kind}.save (or was altered); {written}"
        )
    except PermissionError:
        problem = "cannot be read: permission denied"
    except (EOFError, RuntimeError, KeyError, ValueError, UnicodeDecodeError, OSError) as err:
        what = "is empty" if os.path.getsize(path) == 0 else "is not a torch file, or is truncated"
        problem = f"{what} (torch.load: {type(err).__name__}); {written}"
    raise ResultFileError(path, problem)


def _load(kind: str, path: str | os.PathLike[str], map_location: Any) -> dict[str, Any]:
    path = os.fspath(path)
    payload = _read(path, map_location, kind)
    if not isinstance(payload, dict) or "type" not in payload:
        found = (
            f"a dict with keys {sorted(map(str, payload))[:6]}"
            if isinstance(payload, dict)
            else f"a {type(payload).__name__}"
        )
        raise ResultFileError(
            path, f"holds {found}, not an {kind} (expected a file written by {kind}.save)"
        )
    if payload["type"] != kind:
        other = payload["type"]
        hint = f"; load it with {other}.load" if other in ("EighResult", "SvdResult") else ""
        raise ResultFileError(path, f"holds a {other!r}, not an {kind}{hint}")
    if payload.get("version") != FORMAT_VERSION:
        raise ResultFileError(
            path,
            f"format version {payload.get('version')!r} is not supported (this curvsketch "
            f"reads version {FORMAT_VERSION})",
        )
    missing = [key for key in ("tensors", "meta", "timings") if key not in payload]
    if missing:
        raise ResultFileError(path, f"a damaged {kind} file: missing {', '.join(missing)}")
    parts = {name: payload[name] for name in ("tensors", "meta", "timings")}
    bad = [name for name, part in parts.items() if not isinstance(part, dict)]
    if bad:
        raise ResultFileError(path, f"a damaged {kind} file: {', '.join(bad)} is not a dict")
    return {**parts["tensors"], **parts["meta"], "timings": dict(parts["timings"])}


def build(cls: Any, path: str | os.PathLike[str], map_location: Any) -> Any:
    """``cls(**fields)`` from a saved file; missing, unknown or inconsistent fields name
    the file."""
    data = _load(cls.__name__, path, map_location)
    names = {f.name for f in fields(cls)}
    required = {
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    }
    missing, unknown = sorted(required - set(data)), sorted(set(data) - names)
    if missing or unknown:
        what = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(unknown)}" if unknown else "",
            )
            if part
        )
        raise ResultFileError(os.fspath(path), f"a damaged {cls.__name__} file: {what}")
    try:
        return cls(**data)
    except (TypeError, ValueError, AttributeError, IndexError) as err:
        raise ResultFileError(os.fspath(path), f"a damaged {cls.__name__} file: {err}") from None
