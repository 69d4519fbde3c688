"""A tiny, dependency-free progress reporter for long loops (measurements, training, ...).

Usage::

    with Progress(total=710, desc="HVPs") as p:
        for block in blocks:
            ...
            p.update(len(block))

It writes ``desc: done/total (pct) rate/s ETA h:mm:ss`` to ``stderr``. On a terminal the
line is redrawn in place with ``\\r`` (at most every ``min_interval`` seconds); elsewhere
(logs, CI) a full line is written at most every ``log_interval`` seconds, plus a final
line when the loop ends. ``enabled=False`` makes every method a no-op.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """Format seconds as ``h:mm:ss`` (``?`` when unknown or infinite)."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Report items done out of a known total, with rate and ETA.

    Args:
        total: number of items expected (``>= 0``).
        desc: label printed before the counts.
        enabled: ``False`` silences the reporter entirely.
        stream: where to write (default ``sys.stderr``).
        min_interval: seconds between redraws on a terminal.
        log_interval: seconds between lines when the stream is not a terminal.
        unit: unit name shown in the rate (``items/s`` by default).
        initial: items already done before this reporter started (a resumed loop); they
            count towards ``done`` but not towards the rate.

    Attributes:
        postfix: free text appended to the line (e.g. the current loss).
    """

    def __init__(
        self,
        total: int,
        desc: str = "",
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        min_interval: float = 0.2,
        log_interval: float = 30.0,
        unit: str = "it",
        initial: int = 0,
    ) -> None:
        if total < 0:
            raise ValueError(f"Progress: total must be >= 0, got {total}")
        if not 0 <= initial <= total:
            raise ValueError(f"Progress: initial must be in [0, total={total}], got {initial}")
        self.total = int(total)
        self.desc = desc
        self.enabled = bool(enabled)
        self.stream = stream
        self.unit = unit
        self.done = int(initial)
        self._initial = int(initial)
        self.postfix = ""
        self._start = time.perf_counter()
        self._last = float("-inf")
        self._closed = False
        self._tty = False
        if self.enabled:
            out = self._out()
            isatty = getattr(out, "isatty", None)
            self._tty = bool(isatty()) if callable(isatty) else False
        self._interval = min_interval if self._tty else log_interval

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    @property
    def elapsed(self) -> float:
        """Seconds since the reporter was created."""
        return time.perf_counter() - self._start

    def line(self) -> str:
        """The current status line (without ``\\r`` or newline)."""
        elapsed = self.elapsed
        rate = (self.done - self._initial) / elapsed if elapsed > 0 else float("nan")
        remaining = (self.total - self.done) / rate if rate and rate == rate else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        head = f"{self.desc}: " if self.desc else ""
        return (
            f"{head}{self.done}/{self.total} ({pct:.0f}%) {rate:.3g} {self.unit}/s "
            f"elapsed {format_duration(elapsed)} ETA {format_duration(remaining)}"
            + (f" {self.postfix}" if self.postfix else "")
        )

    def update(self, n: int = 1) -> None:
        """Record ``n`` more items done and redraw if it is time to."""
        if not self.enabled or self._closed:
            return
        self.done += int(n)
        now = time.perf_counter()
        if now - self._last >= self._interval:
            self._last = now
            self._write(final=False)

    def _write(self, final: bool) -> None:
        out = self._out()
        if self._tty:
            out.write("\r" + self.line() + ("\n" if final else ""))
        else:
            out.write(self.line() + "\n")
        out.flush()

    def close(self) -> None:
        """Write the final line (once)."""
        if not self.enabled or self._closed:
            return
        self._closed = True
        self._write(final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
