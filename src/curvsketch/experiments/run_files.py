"""Files of a run: output folders, atomic writes that fail clearly, digests, readable JSON.

A training run or a study writes into a folder the user chose (``--out``). Everything
written there goes through :func:`atomic_write` (a temporary file, then ``os.replace``),
so a file is complete or absent, and an ``OSError`` (full disk, no permission, a file
where a folder should be) becomes one :class:`OutputError` that names the path and the
fix; files already there are left as they were. :func:`digest` fingerprints tensors and
state dicts (SHA-256 of names, dtypes, shapes and bytes), so that reused work can be
checked against what it was computed from. :func:`read_json` treats a corrupt file
(truncated JSON, garbage) as missing, with a one-line notice.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "OutputError",
    "atomic_write",
    "describe_os_error",
    "digest",
    "notice",
    "prepare_dir",
    "read_json",
]


class OutputError(ValueError):
    """An output folder or file cannot be written; the message names the path and the fix."""


def describe_os_error(err: OSError, path: Path, fix: str) -> str:
    """One line saying why ``path`` could not be written, ending with ``fix``."""
    if err.errno == errno.ENOSPC or err.errno == getattr(errno, "EDQUOT", -1):
        return f"cannot write {path}: the disk is full ({err.strerror}); free space or {fix}"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path}: permission denied ({err.strerror}); {fix}"
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"cannot write {path}: a file stands where a folder is needed; {fix}"
    return f"cannot write {path}: {err.strerror or err}; {fix}"


def prepare_dir(path: str | Path, fix: str = "pass another output folder") -> Path:
    """Create the folder ``path`` (and its parents) and check that it can be written.

    Args:
        path: the folder.
        fix: what the user should do instead (ends the error message).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: ``path`` is a file, cannot be created, or is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file, not a folder; {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(describe_os_error(err, path, fix)) from err
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {path}: permission denied; {fix}")
    return path


def atomic_write(
    path: Path, write: Callable[[Path], None], fix: str = "pass another output folder"
) -> None:
    """Write ``path`` through a temporary file, so that it is complete or absent.

    Args:
        path: the file to write.
        write: called with the temporary path; writes the content there.
        fix: what the user should do if writing fails (ends the error message).

    Raises:
        OutputError: writing failed (full disk, permissions, ...); the previous content
            of ``path``, if any, is unchanged and the temporary file is removed.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OutputError(describe_os_error(err, path, fix)) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def digest(tensors: Mapping[str, torch.Tensor] | Iterable[torch.Tensor]) -> str:
    """SHA-256 (hex, 16 digits) of tensors: their names, dtypes, shapes and bytes.

    Args:
        tensors: a state dict (names are hashed in sorted order) or a sequence of tensors.
    """
    items = sorted(tensors.items()) if isinstance(tensors, Mapping) else enumerate(tensors)
    h = hashlib.sha256()
    for name, t in items:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def notice(message: str) -> None:
    """Print a one-line notice on stderr (always: it says that work is redone)."""
    sys.stderr.write(f"curvsketch: notice: {message}\n")
    sys.stderr.flush()


def read_json(path: Path, what: str = "it") -> Any | None:
    """The JSON content of ``path``; ``None`` if it is absent or corrupt (with a notice).

    Args:
        path: the file.
        what: what is done instead, for the notice (e.g. "recomputing it").
    """
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        notice(f"{path} is unreadable ({err}); treating it as missing and {what}")
        return None
