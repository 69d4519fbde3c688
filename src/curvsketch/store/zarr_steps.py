"""A step store on local disk: a Zarr v3 group of named arrays and one marker per step.

Layout of ``PATH/``::

    zarr.json      group metadata; attributes["curvsketch"] = {format, identity, arrays}
    <name>/        one 2-D array per name (e.g. Q, T, R of block Krylov; P0, P1, ... of the
                   passes of the range finder), chunks (rows, chunk_cols), uncompressed
    done/<key>     one marker per committed step: a JSON file with the step's metadata,
                   written to a temporary file and moved into place (os.replace)

A step's chunks are written first and its marker last; a step without a marker is absent
and computed again (its chunks are overwritten), so the store is consistent after a
process crash (SIGKILL, OOM) at any moment. Chunks are not fsync'ed: a power loss may need
a fresh store. The directory is created under a temporary name and renamed into place, so
concurrent creators end up with one store. See :mod:`curvsketch.store.steps`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from curvsketch.store.base import numpy_dtype
from curvsketch.store.identity import RunIdentity
from curvsketch.store.steps import ArraySpec, StepStore
from curvsketch.store.zarr_store import ATTR, FORMAT, STEPS_FORMAT, WRITE_CONFIG, row_chunk

__all__ = ["STEPS_FORMAT", "ZarrStepStore", "store_format"]


def store_format(path: str | os.PathLike[str]) -> str | None:
    """The curvsketch format recorded at ``path`` (``None`` if there is no Zarr group)."""
    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        return None
    attrs = json.loads(meta.read_text()).get("attributes", {}).get(ATTR)
    return attrs.get("format") if isinstance(attrs, dict) else None


class ZarrStepStore(StepStore):
    """Named arrays and step markers of one run in a Zarr v3 group at ``path``.

    Args:
        path: directory of the store (created on :meth:`bind` if absent or empty).
    """

    shared = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self._group: zarr.Group | None = None

    @property
    def location(self) -> str:
        """The store path."""
        return str(self.path)

    def __repr__(self) -> str:
        return f"ZarrStepStore({str(self.path)!r})"

    def _is_store(self) -> bool:
        if not self.path.exists() or (self.path.is_dir() and not any(self.path.iterdir())):
            return False
        if not (self.path / "zarr.json").is_file():
            raise ValueError(
                f"store={str(self.path)!r} exists and is not a curvsketch measurement store "
                "(no zarr.json); pass another path or remove it"
            )
        return True

    def stored_identity(self) -> RunIdentity:
        """The identity recorded in the store (also of a single-pass store at ``path``, so
        that binding another run's store is refused naming the differing fields)."""
        fmt = store_format(self.path)
        if fmt != STEPS_FORMAT and fmt != FORMAT:
            raise ValueError(
                f"{self.path} is not a curvsketch step store (format {fmt!r}, expected "
                f"{STEPS_FORMAT!r}); pass another path or remove it"
            )
        attrs = json.loads((self.path / "zarr.json").read_text())["attributes"][ATTR]
        return RunIdentity.from_dict(attrs["identity"])

    def peek_identity(self) -> RunIdentity | None:
        """The identity recorded at ``path`` (``None`` if no store is there yet)."""
        if self._identity is not None:
            return self._identity
        return self.stored_identity() if self._is_store() else None

    def bind(self, identity: RunIdentity, arrays: Mapping[str, ArraySpec]) -> None:
        """Create the store, or open it and check it holds ``identity``.

        Raises:
            StoreMismatchError: the store holds another run (every differing field named).
            ValueError: ``path`` exists and is not a curvsketch step store.
        """
        if not self._is_store():
            self._create(identity, arrays)
        identity.check_matches(self.stored_identity(), str(self.path))
        self._identity = identity
        self._group = zarr.open_group(str(self.path), mode="r+")

    def open_existing(self) -> None:
        """Bind to the identity the store holds (for reading a complete store)."""
        if self._identity is None:
            if not self._is_store():
                raise FileNotFoundError(
                    f"recover: no measurement store at {self.path}; run measure() (or "
                    "`curvsketch measure`) into it first"
                )
            self._identity = self.stored_identity()
            self._group = zarr.open_group(str(self.path), mode="r+")

    def _create(self, identity: RunIdentity, arrays: Mapping[str, ArraySpec]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            dt = numpy_dtype(identity.dtype)
            for name, spec in arrays.items():
                group.create_array(
                    name,
                    shape=(spec.rows, spec.cols),
                    chunks=(row_chunk(spec.rows, spec.chunk_cols, dt.itemsize), spec.chunk_cols),
                    dtype=dt,
                    fill_value=0.0,
                    compressors=None,
                )
            group.attrs[ATTR] = {
                "format": STEPS_FORMAT,
                "identity": identity.to_dict(),
                "arrays": {k: list(v) for k, v in arrays.items()},
            }
            (tmp / "done").mkdir()
            try:
                os.rename(tmp, self.path)  # atomic; fails if another creator won
            except OSError:
                if not self._is_store():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @property
    def group(self) -> zarr.Group:
        """The open Zarr group."""
        if self._group is None:
            raise RuntimeError(f"{self!r} is not bound to a run yet: call bind() first")
        return self._group

    def done_steps(self) -> dict[str, dict[str, Any]]:
        """Committed steps (markers) and their metadata."""
        out: dict[str, dict[str, Any]] = {}
        done = self.path / "done"
        if not done.is_dir():
            return out
        for p in done.iterdir():
            if p.name.startswith("."):
                continue  # a marker being written
            try:
                out[p.name] = json.loads(p.read_text())
            except (OSError, ValueError):
                continue  # unreadable marker: the step is computed again
        return out

    def _write(self, name: str, col: int, data: np.ndarray) -> None:
        self.group[name].with_config(WRITE_CONFIG)[:, col : col + data.shape[1]] = data

    def _mark(self, key: str, meta: dict[str, Any]) -> None:
        done = self.path / "done"
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=done)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(meta, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, done / key)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def unmark(self, key: str) -> None:
        """Remove the marker of step ``key``."""
        with contextlib.suppress(FileNotFoundError):
            (self.path / "done" / key).unlink()

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Columns ``[start, stop)`` of ``name``."""
        return np.asarray(self.group[name][:, start:stop])
