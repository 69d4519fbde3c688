"""A measurement store on local disk: a Zarr v3 group with one chunk column per block.

Layout of ``PATH/``::

    zarr.json            group metadata; attributes["curvsketch"] = the run identity
    Y/                   outer sketch, D × o, chunks (row_chunk, block_size)
    Z/                   inner sketch, s × s, chunks (s, block_size)
    done/b000012         one empty marker per committed block (temp file + os.replace)

Every chunk of a done block is written, all-zero ones included (``write_empty_chunks``),
uncompressed, so its file has a known size: :meth:`ZarrStore.chunk_problems` finds a
missing or truncated chunk with one ``stat`` per chunk. Stores of format
``curvsketch.measurements/1`` (before the run identity held the probe product and the
model and loss descriptions) can still be recovered, but not measured into: their
identity cannot show that new blocks are of the same operator, and their all-zero chunks
may legitimately be absent (so only chunk sizes and finiteness are checked for them).

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
from typing import Any

import numpy as np
import zarr

from curvsketch.store.base import MeasurementStore, numpy_dtype
from curvsketch.store.identity import RunIdentity, StoreMismatchError

__all__ = ["ZarrStore", "row_chunk"]

ATTR = "curvsketch"
FORMAT = "curvsketch.measurements/2"
#: The format of a step store (:mod:`.zarr_steps`: krylov, hmt); its identity is read only to
#: refuse it naming the differing fields.
STEPS_FORMAT = "curvsketch.steps/1"
#: Earlier formats this version still recovers (read-only).
OLD_FORMATS = ("curvsketch.measurements/1",)
#: Zarr runtime settings of the writes: every chunk on disk, so a missing file is damage.
WRITE_CONFIG = {"write_empty_chunks": True}
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
        self._format: str | None = None

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
        if self._format in OLD_FORMATS and identity != stored:
            raise StoreMismatchError(self._old_format_message(identity, stored))
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
        fmt = attrs.get("format") if isinstance(attrs, dict) else None
        if fmt != FORMAT and fmt not in OLD_FORMATS and fmt != STEPS_FORMAT:
            raise ValueError(
                f"{self.path} is a Zarr group but not a curvsketch measurement store "
                f"(format {FORMAT}); pass another path or remove it"
            )
        self._format = fmt
        return RunIdentity.from_dict(attrs["identity"])

    def peek_identity(self) -> RunIdentity | None:
        """The identity recorded at ``path`` (``None`` if no store is there yet)."""
        if self._identity is not None:
            return self._identity
        return self.stored_identity() if self._is_store() else None

    def check_compatible(self, identity: RunIdentity) -> None:
        """As :meth:`MeasurementStore.check_compatible`; stores of an old format are
        refused for measuring (see the module docstring)."""
        stored = self.peek_identity()
        if stored is not None and self._format in OLD_FORMATS and identity != stored:
            raise StoreMismatchError(self._old_format_message(identity, stored))
        super().check_compatible(identity)

    def _old_format_message(self, identity: RunIdentity, stored: RunIdentity) -> str:
        missing = [f"operator.{k}" for k in identity.operator if k not in stored.operator]
        differing = [d.split(":")[0] for d in identity.differences(stored)]
        fields = sorted(set(missing + differing))
        return (
            f"the measurement store {self.path} was written by an earlier curvsketch (format "
            f"{self._format}): its run identity lacks the probe product and the model and "
            "loss descriptions, so it cannot show that its blocks are of this operator "
            f"(fields not recorded or differing: {', '.join(fields)}). Measure into another "
            "store path (or delete this one to start over); `recover` still reads it as it is"
        )

    # ------------------------------------------------------------------ blocks
    @property
    def group(self) -> zarr.Group:
        """The open Zarr group."""
        if self._group is None:
            raise RuntimeError(f"{self!r} is not bound to a run yet: call bind(identity) first")
        return self._group

    def done_blocks(self) -> set[int]:
        """Blocks whose marker exists (none if the store does not exist yet)."""
        out: set[int] = set()
        if not (self.path / "done").is_dir():
            return out
        for p in (self.path / "done").iterdir():
            if p.name.startswith("b") and p.name[1:].isdigit():
                out.add(int(p.name[1:]))
        return out

    def _write(self, block: int, y: np.ndarray | None, z: np.ndarray) -> None:
        i0, i1 = self.identity.block_range(block)
        if y is not None:
            c0, c1 = self.y_columns(block)
            self.group["Y"].with_config(WRITE_CONFIG)[:, c0:c1] = y
        self.group["Z"].with_config(WRITE_CONFIG)[:, i0:i1] = z

    def _marker(self, block: int) -> Path:
        return self.path / "done" / f"b{block:06d}"

    def _unmark(self, block: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._marker(block).unlink()

    def unmark_blocks(self, blocks: Any) -> None:
        """Mark ``blocks`` not done (their markers removed), so that the next ``measure``
        measures them again; an unbound store binds to the identity it holds first.

        Args:
            blocks: block indices (e.g. :attr:`DamagedBlocksError.blocks
                <curvsketch.store.integrity.DamagedBlocksError.blocks>`).
        """
        if self._identity is None:
            self.bind(self.stored_identity())
        super().unmark_blocks(blocks)

    def unmark_hint(self, blocks: list[int]) -> str:
        """Both ways to mark ``blocks`` not done: delete the markers, or the API call."""
        files = " ".join(str(self._marker(b)) for b in blocks[:10])
        more = " ..." if len(blocks) > 10 else ""
        return (
            f"delete their done markers ({files}{more}) or call "
            f"curvsketch.store.ZarrStore({str(self.path)!r}).unmark_blocks({blocks})"
        )

    def chunk_problems(self, blocks: Any) -> dict[int, list[str]]:
        """Done blocks with a chunk file missing or of the wrong size.

        One ``stat`` per chunk of each block (``⌈D / rows⌉`` for ``Y``, one for ``Z``); no
        data read. Stores of an old format may leave all-zero chunks out, so for them only
        sizes are checked.

        Args:
            blocks: the blocks to check.
        """
        problems: dict[int, list[str]] = {}
        allow_missing = self._format in OLD_FORMATS
        for name in ("Y", "Z"):
            arr = self.group[name]
            expected = _chunk_bytes(arr)
            row_chunks = -(-int(arr.shape[0]) // int(arr.chunks[0]))
            for b in sorted(blocks):
                if name == "Y" and self.y_columns(b)[0] == self.y_columns(b)[1]:
                    continue  # block owns no columns of Y
                for r in range(row_chunks):
                    key = arr.metadata.encode_chunk_key((r, b))
                    f = self.path / name / key
                    try:
                        size = f.stat().st_size
                    except FileNotFoundError:
                        if not allow_missing:
                            problems.setdefault(b, []).append(f"chunk {name}/{key} is missing")
                        continue
                    if expected is not None and size != expected:
                        problems.setdefault(b, []).append(
                            f"chunk {name}/{key} has {size} bytes, expected {expected}"
                        )
        return problems

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


def _chunk_bytes(arr: zarr.Array) -> int | None:
    """Bytes of one stored chunk of an uncompressed array (``None`` if compressed)."""
    if tuple(arr.compressors) or tuple(arr.filters):
        return None
    return int(np.prod(arr.chunks)) * np.dtype(arr.dtype).itemsize
