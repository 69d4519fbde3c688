"""What every benchmark script shares: where files go, run info, output, timing, memory, counts.

* Folders: :data:`REPO_ROOT`, :data:`BENCH_DIR` (``benchmarks/``), :data:`OUT_DIR`
  (``benchmarks/out/``, scratch output, ignored by git) and :data:`RESULTS_DIR`
  (``benchmarks/results/``, the committed results).
* Run info: :func:`run_info` (machine, versions, git state, command, arguments, load
  average), :func:`machine`, :func:`versions`, :func:`git_state`; :func:`set_threads`,
  :func:`log`.
* Output: :func:`write_json` (atomic, so a script can rewrite its file after every
  measurement and a crash never leaves half a file) and :func:`markdown_table`.
* Timing: :class:`Timer` and :func:`timed` (wall and process CPU seconds).
* Memory: :func:`peak_rss_bytes` (``VmHWM``), :func:`maxrss_bytes` (``ru_maxrss``),
  :func:`rss_bytes` (``VmRSS``), :func:`reset_peak_rss`, and :class:`RssSampler`, a thread
  that samples ``VmRSS``.
* Products: :class:`CountingOperator` wraps an operator and counts the columns multiplied
  with it; :func:`count_columns_in_place` does the same to the operator itself where the
  caller needs the operator's own type and attributes (e.g. a store's run identity).
* Subprocesses: :func:`module_command` starts a script as ``python -m benchmarks...``
  (run it with ``cwd=REPO_ROOT``).

Only the standard library and ``torch`` are imported here (``numpy`` and scipy on use), so
that the light scripts (the GPU report's merge step) can use it without ``curvsketch``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = [
    "BENCH_DIR",
    "OUT_DIR",
    "PACKAGES",
    "REPO_ROOT",
    "RESULTS_DIR",
    "CountingOperator",
    "RssSampler",
    "Timer",
    "count_columns_in_place",
    "git_state",
    "log",
    "machine",
    "markdown_table",
    "maxrss_bytes",
    "module_command",
    "peak_rss_bytes",
    "proc_status_kib",
    "reset_peak_rss",
    "rss_bytes",
    "run_info",
    "set_threads",
    "timed",
    "versions",
    "write_json",
]

T = TypeVar("T")

#: ``benchmarks/``, the package folder.
BENCH_DIR = Path(__file__).resolve().parent
#: The repository root: the working directory of ``python -m benchmarks...``.
REPO_ROOT = BENCH_DIR.parent
#: Scratch output of the scripts (ignored by git).
OUT_DIR = BENCH_DIR / "out"
#: Results kept in the repository.
RESULTS_DIR = BENCH_DIR / "results"
#: Every neighbour whose version goes into the records.
PACKAGES = (
    "curvsketch",
    "torch",
    "numpy",
    "scipy",
    "skerch",
    "curvlinops-for-pytorch",
    "hessian-eigenthings",
    "PyHessian",
    "matplotlib",
)


# ------------------------------------------------------------------------ run info


def log(*parts: Any) -> None:
    """Print a progress line on stderr, with the wall-clock time.

    Args:
        *parts: what to print, as ``print`` would.
    """
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def set_threads(threads: int) -> None:
    """Set torch's threads for every method (the suite's default is 2).

    Args:
        threads: intra-op threads; also ``OMP_NUM_THREADS`` unless already set.
    """
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def machine() -> dict[str, Any]:
    """Describe where a benchmark runs.

    Returns:
        Platform, processor, Python and torch versions, torch threads and, where CUDA is
        available, the device name.
    """
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of curvsketch and every neighbour.

    Args:
        packages: distribution names.

    Returns:
        ``{name: version}``, ``None`` for a package that is not installed.
    """
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state() -> dict[str, Any]:
    """Commit of the working tree and whether it has uncommitted changes.

    Returns:
        ``{"commit": sha or None, "dirty": bool or None}`` (``None``: git not available).
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return {"commit": head or None, "dirty": bool(dirty)}
    except OSError:
        return {"commit": None, "dirty": None}


def run_info(args: argparse.Namespace) -> dict[str, Any]:
    """What every output file records about its run.

    Args:
        args: the parsed command line.

    Returns:
        Machine (with the CPU count), versions, git state, the exact command, working
        directory, arguments, start time and the 1-minute load average at the start.
    """
    return {
        "machine": {**machine(), "cpus": os.cpu_count()},
        "versions": versions(),
        "git": git_state(),
        "command": " ".join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "cwd": os.getcwd(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_avg_at_start": os.getloadavg()[0],
    }


def module_command(module: str, *args: str) -> list[str]:
    """The command line that runs a benchmark module with this interpreter.

    Args:
        module: dotted name, e.g. ``"benchmarks.suite.scaling_d"``.
        *args: its arguments.

    Returns:
        ``[sys.executable, "-m", module, *args]``; run it with ``cwd=REPO_ROOT``.
    """
    return [sys.executable, "-m", module, *args]


# ------------------------------------------------------------------------ output


def write_json(path: Path | str, payload: Any, indent: int = 1) -> None:
    """Write JSON atomically (temporary file, then rename): a crash never leaves half a file.

    Tensors, NumPy scalars and paths are converted; the file ends with a newline.

    Args:
        path: destination; its folder is created.
        payload: what to write.
        indent: JSON indentation.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=indent, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def markdown_table(
    headers: Sequence[Any], rows: Sequence[Sequence[Any]], align: str = "", escape: bool = False
) -> str:
    """A GitHub Markdown table.

    Args:
        headers: column titles.
        rows: cells, one sequence per row (``str()`` of each).
        align: one character per column, ``l`` or ``r`` (default: all ``l``).
        escape: write ``|`` inside cells as ``\\|`` (``|λ|`` would split a cell).

    Returns:
        The table, lines joined by newlines, without a final newline.
    """

    def cell(c: Any) -> str:
        return str(c).replace("|", "\\|") if escape else str(c)

    align = align or "l" * len(headers)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------ timing


class Timer:
    """Wall and process CPU seconds of a ``with`` block.

    CPU seconds are of the whole process (all threads): they leave out time spent waiting
    for a CPU on a shared machine and serve as a check on wall-time ratios.

    Attributes:
        seconds: wall seconds (after the block).
        cpu_seconds: CPU seconds of the process during the block.
    """

    seconds: float
    cpu_seconds: float

    def __enter__(self) -> Timer:
        self._c0, self._t0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu_seconds = time.process_time() - self._c0


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """Call ``fn`` and time it.

    Args:
        fn: the call.

    Returns:
        ``(fn(), wall seconds, process CPU seconds)``.
    """
    with Timer() as t:
        out = fn()
    return out, t.seconds, t.cpu_seconds


# ------------------------------------------------------------------------ memory


def proc_status_kib(key: str) -> int:
    """A field of ``/proc/self/status`` in KiB (``VmRSS``, ``VmHWM``, ...).

    Args:
        key: the field name, without the colon.

    Returns:
        Its value in KiB.

    Raises:
        KeyError: the field is not there.
        OSError: ``/proc`` is not available (not Linux).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def rss_bytes() -> int:
    """Resident memory of this process now (``VmRSS``); 0 where ``/proc`` is unavailable."""
    try:
        return proc_status_kib("VmRSS") * 1024
    except (OSError, KeyError):
        return 0


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (``VmHWM``); 0 where ``/proc`` is unavailable.

    Unlike :func:`maxrss_bytes` it can be reset (:func:`reset_peak_rss`).
    """
    try:
        return proc_status_kib("VmHWM") * 1024
    except (OSError, KeyError):
        return 0


def maxrss_bytes(children: bool = False) -> int:
    """Peak resident memory from ``getrusage`` (``ru_maxrss``, KiB on Linux).

    Args:
        children: of the waited-for child processes (the largest of them) instead of this
            process.

    Returns:
        Bytes.
    """
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ≥ 4.0, ``/proc/self/clear_refs``).

    Returns:
        False if not permitted (then :func:`peak_rss_bytes` keeps the older peak).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler(threading.Thread):
    """A daemon thread that samples ``VmRSS`` every ``interval`` seconds.

    ``start()`` it, ``stop.set()`` and ``join()`` it; ``peak`` is the largest RSS seen, in
    bytes.

    Args:
        interval: seconds between samples.
    """

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self.stop = interval, 0, threading.Event()

    def run(self) -> None:
        """Sample until ``stop`` is set."""
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)


# ------------------------------------------------------------------------ products


class CountingOperator:
    """An operator that counts the columns (vectors) multiplied with it.

    Works for any caller that uses the operator protocol (``shape``, ``dtype``,
    ``device``, ``@``); a vector counts as one column. :meth:`to_scipy` gives scipy's
    ``eigsh`` the same counted products.

    Args:
        op: the operator whose products are counted (validation is left to it).

    Attributes:
        count: columns multiplied so far.
    """

    def __init__(self, op: Any) -> None:
        self.op = op
        self.shape = (int(op.shape[0]), int(op.shape[1]))
        self.dtype = op.dtype
        self.device = op.device
        self.count = 0

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        self.count += 1 if x.ndim == 1 else int(x.shape[1])
        return self.op @ x

    def to_scipy(self) -> Any:
        """A ``scipy.sparse.linalg.LinearOperator`` on NumPy arrays (symmetric: the adjoint
        product is the product), counted like ``@``."""
        from scipy.sparse.linalg import LinearOperator as ScipyLO

        np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype

        def mm(x: Any) -> Any:
            import numpy as np

            t = torch.as_tensor(np.ascontiguousarray(x), dtype=self.dtype, device=self.device)
            return (self @ t).detach().cpu().numpy()

        return ScipyLO(self.shape, matvec=mm, matmat=mm, rmatvec=mm, rmatmat=mm, dtype=np_dtype)


def count_columns_in_place(op: T) -> T:
    """Make ``op`` count the columns it multiplies, keeping its type and attributes.

    ``op``'s class is swapped for a subclass (of the same name, so that e.g. a store's run
    identity is the one of the uncounted operator) whose ``_matmat`` adds the columns of
    every block to the class attribute ``columns``; read it as ``op.columns``. For
    operators with a ``_matmat`` (curvsketch's ``LinearOperator``), where a wrapper would
    hide attributes the caller reads (``model``, ``parameter_vector``, ...).

    Args:
        op: the operator; changed in place.

    Returns:
        ``op``.
    """
    base = type(op)

    class Counted(base):  # type: ignore[misc, valid-type]
        columns = 0

        def _matmat(self, v: torch.Tensor) -> torch.Tensor:
            type(self).columns += int(v.shape[1]) if v.ndim == 2 else 1
            return super()._matmat(v)

    Counted.__name__, Counted.__qualname__ = base.__name__, base.__qualname__
    op.__class__ = Counted
    return op
