"""A measurement store on local disk: a Zarr v3 group with one chunk column per block.

Layout of ``PATH/``::

    zarr.json            group metadata; attributes["curvsketch"] = the run identity
    Y/                   outer sketch, D × o, chunks (row_chunk, block_size)
    Z/                   inner sketch, s × s, chunks (s, block_size)
    done/b000012         one empty marker per committed block (temp file + os.replace)

Blocks own disjoint chunks, so workers of one run may write concurrently (each its own
blocks). The store directory is created under a temporary name and renamed into place, so
concurrent creators end up with one store (the losers verify its identity). A block's chunks
are written first and its marker last; a block without a marker is absent and measured again
(its chunks are overwritten). This is atomic against process crashes (SIGKILL, OOM); it does
not fsync the chunks, so a power loss may need a fresh store.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import zarr

from curvsketch.store.base import MeasurementStore, numpy_dtype
from curvsketch.store.identity import RunIdentity

__all__ = ["ZarrStore", "row_chunk"]

ATTR = "curvsketch"
FORMAT = "curvsketch.measurements/1"
#: Target bytes per chunk of ``Y``.
CHUNK_BYTES = 16 * 2**20


def row_chunk(dim: int, block_size: int, itemsize: int) -> int:
    """Rows per chunk of ``Y``: about :data:`CHUNK_BYTES` per ``(rows, block_size)`` chunk."""
    return max(1, min(dim, CHUNK_BYTES // max(1, block_size * itemsize)))


class ZarrStore(MeasurementStore):
    """Measurements of one run in a Zarr v3 group at a local ``path``.

    Args:
        path: directory of the store (created on :meth:`bind` if absent or empty).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self._group: zarr.Group | None = None

    @property
    def location(self) -> str:
        """The store path."""
        return str(self.path)

    def __repr__(self) -> str:
        return f"ZarrStore({str(self.path)!r})"

    # ------------------------------------------------------------------ creation
    def bind(self, identity: RunIdentity) -> None:
        """Create the store for ``identity``, or open it and check it holds that run.

        Raises:
            StoreMismatchError: the store holds another run (the message lists the
                differing fields).
            ValueError: ``path`` exists and is not a curvsketch measurement store.
        """
        if not self._is_store():
            self._create(identity)
        stored = self.stored_identity()
        identity.check_matches(stored, str(self.path))
        self._identity = identity
        self._group = zarr.open_group(str(self.path), mode="r+")

    def _is_store(self) -> bool:
        if not self.path.exists():
            return False
        if self.path.is_dir() and not any(self.path.iterdir()):
            return False
        if not (self.path / "zarr.json").is_file():
            raise ValueError(
                f"store={str(self.path)!r} exists and is not a curvsketch measurement store "
                "(no zarr.json); pass another path or remove it"
            )
        return True

    def _create(self, identity: RunIdentity) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            dt = numpy_dtype(identity.dtype)
            b = identity.block_size
            group.create_array(
                "Y",
                shape=(identity.dim, identity.outer),
                chunks=(row_chunk(identity.dim, b, dt.itemsize), b),
                dtype=dt,
                fill_value=0.0,
                compressors=None,
            )
            group.create_array(
                "Z",
                shape=(identity.inner, identity.inner),
                chunks=(identity.inner, b),
                dtype=dt,
                fill_value=0.0,
                compressors=None,
            )
            group.attrs[ATTR] = {"format": FORMAT, "identity": identity.to_dict()}
            (tmp / "done").mkdir()
            try:
                os.rename(tmp, self.path)  # atomic; fails if another creator won
            except OSError:
                if not self._is_store():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def stored_identity(self) -> RunIdentity:
        """The identity recorded in the store."""
        meta = json.loads((self.path / "zarr.json").read_text())
        attrs = meta.get("attributes", {}).get(ATTR)
        if not isinstance(attrs, dict) or attrs.get("format") != FORMAT:
            raise ValueError(
                f"{self.path} is a Zarr group but not a curvsketch measurement store "
                f"(format {FORMAT}); pass another path or remove it"
            )
        return RunIdentity.from_dict(attrs["identity"])

    # ------------------------------------------------------------------ blocks
    @property
    def group(self) -> zarr.Group:
        """The open Zarr group."""
        if self._group is None:
            raise RuntimeError(f"{self!r} is not bound to a run yet: call bind(identity) first")
        return self._group

    def done_blocks(self) -> set[int]:
        """Blocks whose marker exists."""
        out = set()
        for p in (self.path / "done").iterdir():
            if p.name.startswith("b") and p.name[1:].isdigit():
                out.add(int(p.name[1:]))
        return out

    def _write(self, block: int, y: np.ndarray | None, z: np.ndarray) -> None:
        i0, i1 = self.identity.block_range(block)
        if y is not None:
            c0, c1 = self.y_columns(block)
            self.group["Y"][:, c0:c1] = y
        self.group["Z"][:, i0:i1] = z

    def _mark_done(self, block: int) -> None:
        done = self.path / "done"
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=done)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, done / f"b{block:06d}")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def read_y(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` of ``Y``."""
        return np.asarray(self.group["Y"][start:stop, :])

    def read_z(self) -> np.ndarray:
        """``Z``."""
        return np.asarray(self.group["Z"][:, :])

    def y_array(self) -> zarr.Array:
        """The Zarr array of ``Y`` (for out-of-core recovery)."""
        return self.group["Y"]
