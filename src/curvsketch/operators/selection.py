"""Choosing a product engine (``engine="auto"``), and saying why an engine cannot run a model.

The engines compute the same products by different routes (see
:mod:`curvsketch.operators.engines`), and which is fastest depends on the model, the
micro-batch and the block size. ``"auto"`` measures them on the first micro-batch of the
first product, with that product's own vectors, and **keeps every timed result**: each
engine computes different rows of the block, so the measurements are part of the product.
In a warm process choosing costs 0.4-1.9 products (it cost 3-6 before, one 8-vector
product on a small transformer / MLP); the first ``torch.func`` call of a process also
imports ``torch._dynamo`` (seconds, once), which any use of the ``vmap`` engines pays.

0. Every engine is run once, untimed, on a slice of two samples, so that one-time costs
   of the process (lazy initialisation, imports) do not count as an engine's speed.
1. Every engine multiplies one vector (a different row of the block where there are
   enough rows). An engine that fails is recorded with the reason; one more than
   :data:`AUTO_SLOW_FACTOR` times slower than the fastest is not timed further.
2. If the block leaves at least two rows for each engine still in the race, they share
   the next rows equally (at most :data:`AUTO_PROBE_VECTORS` each), which compares them
   on a block (engines scale differently with the block size). The fastest per vector
   is kept and finishes the rows of the first micro-batch.

The first product's first micro-batch is thus computed by several engines: the same
values up to rounding (~1e-16 relative). For bitwise-reproducible runs, name the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import torch

from curvsketch.operators.batches import slice_samples
from curvsketch.operators.engines import Problem
from curvsketch.operators.samples import MicroBatch

__all__ = [
    "AUTO_MIN_BLOCK",
    "AUTO_PROBE_VECTORS",
    "AUTO_SLOW_FACTOR",
    "ENGINE_FAILURES",
    "WARM_UP_SAMPLES",
    "Choice",
    "EngineError",
    "choose_engine",
    "engine_failure",
    "reason",
]

#: Samples of the first micro-batch each engine is warmed up on (untimed, not reused).
WARM_UP_SAMPLES = 2
#: At most this many vectors of the first block are timed per engine (stage 2).
AUTO_PROBE_VECTORS = 64
#: An engine this many times slower than the fastest on one vector is not timed further.
AUTO_SLOW_FACTOR = 4.0
#: A first product of fewer vectors keeps ``"auto"`` undecided: its choice is provisional
#: and the engines are timed again on the next product (vmapped engines gain per vector on
#: larger blocks, so a choice on 1-2 vectors would favour the graph engine).
AUTO_MIN_BLOCK = 8
#: Exceptions that mean "this engine cannot run this model" (missing derivatives, ops
#: without vmap / forward-mode support, memory).
ENGINE_FAILURES = (RuntimeError, NotImplementedError, TypeError)

Engine = Callable[[Problem, MicroBatch, torch.Tensor], torch.Tensor]


class EngineError(RuntimeError):
    """An engine cannot run this model; the message names it, the reason and what works.

    Attributes:
        engine: the engine that failed.
        reason: the underlying error, one line.
        working: engines that do run this model (on the micro-batch where it failed).
    """

    def __init__(self, message: str, engine: str, reason: str, working: list[str]) -> None:
        super().__init__(message)
        self.engine = engine
        self.reason = reason
        self.working = working


def reason(err: BaseException) -> str:
    """``"Type: first line of the message"``."""
    msg = str(err).strip().splitlines()
    return f"{type(err).__name__}: {msg[0] if msg else ''}".rstrip(": ")


@dataclass
class Choice:
    """What ``"auto"`` found on the first micro-batch.

    Attributes:
        engine: the fastest engine that runs the model.
        timings: seconds per vector for each engine (``nan`` if it failed).
        errors: ``reason`` for each engine that failed.
        part: the unweighted products of the first micro-batch with every row of the block.
    """

    engine: str
    timings: dict[str, float]
    errors: dict[str, str] = field(default_factory=dict)
    part: torch.Tensor | None = None


def _timed(fn: Engine, problem: Problem, mb: MicroBatch, V: torch.Tensor) -> tuple:
    t0 = time.perf_counter()
    out = fn(problem, mb, V)
    if out.device.type == "cuda":
        torch.cuda.synchronize(out.device)
    return out, time.perf_counter() - t0


def _warm_up(
    engines: Mapping[str, Engine], problem: Problem, mb: MicroBatch, V: torch.Tensor
) -> None:
    """Run every engine once on a slice of a few samples, one vector, untimed.

    The first call of an engine in a process pays one-time costs that say nothing about
    its speed (the first backward's lazy initialisation; the first ``torch.func`` transform
    imports ``torch._dynamo``, seconds): paid here on a tiny slice, they no longer skew the
    timings. A failure here means nothing (a model may need its full batch); stage 1 decides.
    """
    k = min(WARM_UP_SAMPLES, mb.stop - mb.start)
    tiny = replace(
        mb,
        inputs=slice_samples(mb.inputs, 0, k),
        targets=slice_samples(mb.targets, 0, k),
        stop=mb.start + k,
    )
    for fn in engines.values():
        try:
            fn(problem, tiny, V[:1])
        except Exception:  # only a warm-up: stage 1 reports failures
            continue


def choose_engine(
    engines: Mapping[str, Engine], problem: Problem, mb: MicroBatch, V: torch.Tensor
) -> Choice:
    """Time the engines on micro-batch ``mb`` with the rows of ``V``; keep the results.

    Args:
        engines: name -> engine, the first being the reference (its error is raised when
            no engine runs).
        problem: model, loss and parameters.
        mb: the first micro-batch of the pass.
        V: the ``(m, D)`` block of the first product.

    Returns:
        A :class:`Choice` whose ``part`` holds ``curvature(mb) @ v`` for every row ``v`` of ``V``.

    Raises:
        The first engine's error when no engine runs the model (a model or data problem).
    """
    m = V.shape[0]
    _warm_up(engines, problem, mb, V)
    part = torch.empty_like(V)
    done = 0
    timings: dict[str, float] = {}
    errors: dict[str, str] = {}
    first_error: BaseException | None = None
    one: dict[str, float] = {}
    for name, fn in engines.items():  # stage 1: one vector each
        row = done if done < m else 0
        try:
            out, dt = _timed(fn, problem, mb, V[row : row + 1])
        except ENGINE_FAILURES as err:
            errors[name], timings[name] = reason(err), float("nan")
            first_error = first_error or err
            continue
        if done < m:
            part[done] = out[0]
            done += 1
        one[name] = timings[name] = dt
    if not one:
        assert first_error is not None
        raise first_error
    fastest = min(one.values())
    keep = [n for n, t in one.items() if t <= AUTO_SLOW_FACTOR * fastest]
    k = min(AUTO_PROBE_VECTORS, (m - done) // max(len(keep), 1))
    if len(keep) > 1 and k > 1:  # stage 2: equal shares of the next rows
        for name in list(keep):
            try:
                out, dt = _timed(engines[name], problem, mb, V[done : done + k])
            except ENGINE_FAILURES as err:  # e.g. out of memory on a larger block
                errors[name], timings[name] = reason(err), float("nan")
                first_error = first_error or err
                keep.remove(name)
                continue
            part[done : done + k] = out
            done += k
            timings[name] = dt / k
    if not keep:
        keep = [n for n in one if n not in errors]
    if not keep:
        assert first_error is not None
        raise first_error
    best = min(keep, key=lambda n: timings[n])
    if done < m:
        part[done:] = engines[best](problem, mb, V[done:])
    return Choice(best, timings, errors, part)


def engine_failure(
    engines: Mapping[str, Engine],
    failed: str,
    problem: Problem,
    mb: MicroBatch,
    V: torch.Tensor,
    err: BaseException,
    kind: str,
) -> BaseException:
    """The error to raise when engine ``failed`` raised ``err`` on ``mb``.

    Tries the other engines on one vector: if none runs, the fault is the model's or the
    data's and ``err`` itself is returned; otherwise an :class:`EngineError` naming the
    engine, the reason and the engines that work.
    """
    working = []
    for name, fn in engines.items():
        if name == failed:
            continue
        try:
            fn(problem, mb, V[:1])
        except Exception:  # any failure: that engine does not run it either
            continue
        working.append(name)
    if not working:
        return err
    why = reason(err)
    return EngineError(
        f"engine {failed!r} cannot compute {kind} products for this model (at {mb.where()}): "
        f"{why}. Engines that run it: {', '.join(map(repr, working))}; pass "
        f"engine={working[0]!r}, or engine='auto' (it skips engines that fail and lists "
        "them in op.engine_errors)",
        failed,
        why,
        working,
    )
