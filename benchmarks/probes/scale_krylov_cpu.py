"""CPU scale run of block Krylov into a store, killed once and resumed (#15).

The 3c3d net (DeepOBS ``cifar10_3c3d``, 895,210 parameters) at its seeded initialisation,
the exact loss Hessian on 128 synthetic CIFAR-sized samples (3×32×32, seeded), float32:
``seigh(op, k, m, recovery="krylov", block_size=b, store=PATH)`` with ``k = 1000``,
``m = 2000`` by default. The run happens in a child process; the parent SIGKILLs it once
``--kill-after`` Krylov blocks are committed (plus a random moment inside the next block),
then starts a second child on the same store, which resumes. Reported: per child the
blocks found committed, the products it multiplied (counted on the operator), seconds per
stage (``measure`` = products, ``qr`` = orthogonalisation, ``eigh``, ``core``, ``eigvec``,
the store's ``commit`` wait), wall time and peak RSS (``ru_maxrss``); after the resume
the top eigenvalues, how many of the ``k`` pairs have a residual bound within 1 % of
``|λ|``, and the orthonormality check's outcome.

    .venv/bin/python -m benchmarks.probes.scale_krylov_cpu --store /tmp/k3c3d   # ~40 min, 2 cores
    .venv/bin/python -m benchmarks.probes.scale_krylov_cpu --quick --store /tmp/k3c3d_quick

Writes ``benchmarks/results/scale_krylov_cpu.json`` and ``.md`` (``_quick`` with
``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import (
    REPO_ROOT,
    RESULTS_DIR,
    count_columns_in_place,
    maxrss_bytes,
    module_command,
)

RESULTS = RESULTS_DIR


def done_blocks(store: Path) -> int:
    """Committed Krylov steps in a step store (its ``done`` markers)."""
    d = store / "done"
    return sum(1 for p in d.iterdir() if not p.name.startswith(".")) if d.is_dir() else 0


def build_operator(samples: int, micro_batch: int, engine: str) -> Any:
    """The 3c3d Hessian on seeded synthetic data, counting the columns it multiplies."""
    from torch import nn

    from curvsketch import HessianOperator
    from curvsketch.experiments.models import deepobs_3c3d

    model = deepobs_3c3d(10, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (samples,), generator=g)
    op = HessianOperator(
        model, nn.CrossEntropyLoss(), (x, y), micro_batch_size=micro_batch, engine=engine
    )
    return count_columns_in_place(op)


def child(args: argparse.Namespace) -> int:
    """One run (fresh or resuming) into the store; its record as JSON on stdout's last line."""
    from curvsketch import seigh

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    op = build_operator(args.samples, args.micro_batch, args.engine)
    setup = time.perf_counter() - t0
    found = done_blocks(Path(args.store))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    result = seigh(
        op,
        args.outer,
        args.inner,
        recovery="krylov",
        block_size=args.block_size,
        store=args.store,
        progress=True,
    )
    wall = time.perf_counter() - t0
    timings = dict(getattr(result, "timings", {}) or {})
    values = result.eigenvalues.double()
    bounds = result.residual_norms.double() if result.residual_norms is not None else None
    record: dict[str, Any] = {
        "dim": int(op.shape[0]),
        "found_committed_blocks": found,
        "products": int(op.columns),
        "num_products_reported": int(result.num_products),
        "setup_seconds": setup,
        "seigh_seconds": wall,
        "timings": timings,
        "peak_rss_bytes": maxrss_bytes(),
        "top_eigenvalues": values[:10].tolist(),
        "smallest_kept_abs_eigenvalue": float(values.abs().min()),
    }
    if bounds is not None:
        rel = bounds / values.abs().clamp_min(torch.finfo(torch.float64).tiny)
        record["pairs_within_1pct"] = int((rel <= 1e-2).sum())
        record["pairs_within_1e-4"] = int((rel <= 1e-4).sum())
        record["first_pair_above_1pct"] = (
            int((rel > 1e-2).nonzero()[0]) if (rel > 1e-2).any() else None
        )
        record["relative_bound_quantiles"] = {
            str(q): float(rel.quantile(q)) for q in (0.1, 0.5, 0.9, 1.0)
        }
    print("RECORD " + json.dumps(record), flush=True)
    return 0


def run_child(args: argparse.Namespace, kill_after: int | None, seed: int) -> dict[str, Any]:
    """Start a child; SIGKILL it after ``kill_after`` committed blocks (None: let it end)."""
    cmd = module_command("benchmarks.probes.scale_krylov_cpu", "--child", *args.forward)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    if kill_after is not None:
        while done_blocks(Path(args.store)) < kill_after and proc.poll() is None:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise SystemExit("the first run ended before the kill: lower --kill-after")
        delay = random.Random(seed).uniform(0.0, args.kill_jitter)
        time.sleep(delay)
        committed = done_blocks(Path(args.store))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return {
            "killed": True,
            "kill_delay_seconds": delay,
            "committed_at_kill": committed,
            "committed_after_kill": done_blocks(Path(args.store)),
            "wall_seconds": time.perf_counter() - t0,
            "peak_rss_bytes_children_so_far": maxrss_bytes(children=True),
        }
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"the resumed run failed (exit {proc.returncode})")
    line = next(ln for ln in reversed(out.splitlines()) if ln.startswith("RECORD "))
    record = json.loads(line[len("RECORD ") :])
    record["killed"] = False
    record["wall_seconds"] = time.perf_counter() - t0
    return record


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    first, second = report["first_run"], report["resumed_run"]
    t = second["timings"]
    gb = 1e9
    lines = [
        f"# Krylov into a store at scale: 3c3d (D = {second['dim']:,}), killed once, resumed",
        "",
        "`benchmarks/probes/scale_krylov_cpu.py`"
        + (" --quick" if s["quick"] else "")
        + f": {s['samples']} synthetic CIFAR-sized samples, float32, k = {s['outer']}, "
        f"m = {s['inner']} (blocks of {s['block_size']}: {s['blocks']} Krylov blocks), "
        f"`{s['engine']}` engine, {s['threads']} torch threads, {report['machine']}, "
        f"torch {report['torch']}.",
        "",
        "| | first run (SIGKILLed) | resumed run |",
        "| --- | ---: | ---: |",
        f"| blocks committed when it started | 0 | {second['found_committed_blocks']} |",
        f"| blocks committed at the kill | {first['committed_at_kill']} | — |",
        f"| blocks multiplied by this run | ≥ {first['committed_after_kill']} | "
        f"{(second['products'] - report['symmetry_products']) // s['block_size']} |",
        f"| products (operator columns) | — | {second['products']:,} |",
        f"| wall s | {first['wall_seconds']:.0f} | {second['wall_seconds']:.0f} |",
        f"| peak RSS GB | ≤ {first['peak_rss_bytes_children_so_far'] / gb:.2f} | "
        f"{second['peak_rss_bytes'] / gb:.2f} |",
        "",
        "Resumed run, seconds per stage: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(t.items()))
        + f"; setup (model, data, operator) {second['setup_seconds']:.1f}.",
        "",
        f"Top eigenvalues: {', '.join(f'{v:.4g}' for v in second['top_eigenvalues'][:5])}; "
        f"smallest kept |λ| {second['smallest_kept_abs_eigenvalue']:.3g}.",
    ]
    if "pairs_within_1pct" in second:
        q = second["relative_bound_quantiles"]
        lines += [
            "",
            f"Residual bounds (‖Hx − θx‖ + rounding floor) relative to |λ|: "
            f"{second['pairs_within_1pct']} of {s['outer']} pairs within 1 %, "
            f"{second['pairs_within_1e-4']} within 1e-4; quantiles 10 % {q['0.1']:.1e}, "
            f"50 % {q['0.5']:.1e}, 90 % {q['0.9']:.1e}, max {q['1.0']:.1e}. The "
            "orthonormality check of the leading 128 Ritz vectors passed (the run would "
            "have raised KrylovOrthogonalityError).",
        ]
    lines += ["", "Command:", "", "    " + report["command"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--store", required=True, help="store directory (removed first)")
    p.add_argument("--quick", action="store_true", help="16 samples, k=40, m=200")
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--micro-batch", type=int, default=128)
    p.add_argument("--outer", type=int, default=1000)
    p.add_argument("--inner", type=int, default=2000)
    p.add_argument("--block-size", type=int, default=50)
    p.add_argument("--engine", default="graph")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--kill-after", type=int, help="committed blocks before the kill")
    p.add_argument("--kill-jitter", type=float, default=5.0, help="random extra seconds")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moment")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.micro_batch, args.outer, args.inner = 16, 16, 40, 200
        args.block_size, args.kill_jitter = 20, 0.5
    if args.child:
        return child(args)
    from curvsketch.sketch import SYMMETRY_PRODUCTS

    blocks = args.inner // args.block_size
    kill_after = args.kill_after if args.kill_after is not None else blocks // 2
    args.forward = [
        "--store", str(Path(args.store).resolve()), "--samples", str(args.samples),
        "--micro-batch", str(args.micro_batch), "--outer", str(args.outer),
        "--inner", str(args.inner), "--block-size", str(args.block_size),
        "--engine", args.engine, "--threads", str(args.threads),
    ]  # fmt: skip
    store = Path(args.store)
    if store.exists():
        shutil.rmtree(store)
    first = run_child(args, kill_after, args.seed)
    print(f"killed after {first['committed_after_kill']} of {blocks} blocks", flush=True)
    second = run_child(args, None, args.seed)
    report = {
        "settings": {
            "samples": args.samples,
            "micro_batch": args.micro_batch,
            "outer": args.outer,
            "inner": args.inner,
            "block_size": args.block_size,
            "blocks": blocks,
            "engine": args.engine,
            "threads": args.threads,
            "quick": args.quick,
            "kill_after": kill_after,
        },
        "symmetry_products": SYMMETRY_PRODUCTS,
        "first_run": first,
        "resumed_run": second,
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "command": "python -m benchmarks.probes.scale_krylov_cpu " + " ".join(argv or sys.argv[1:]),
    }
    RESULTS.mkdir(exist_ok=True)
    name = "scale_krylov_cpu_quick" if args.quick else "scale_krylov_cpu"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
