"""Time and peak memory against the dimension D at a fixed size o, for every method.

The operator is a cheap synthetic one with a known spectrum,

    H = U diag(λ) Uᵀ + δ·I,   U (D × r) with orthonormal columns, λ_i = ±1/i (alternating
    signs, as in ``benchmarks/probes/seigh_linalg.py``), δ = 0.1 / D,

so its eigenvalues are λ_i + δ (i ≤ r) and δ, and a product costs about 4·D·r flops per
vector: the time is dominated by what each method does around the products. The diagonal's
trace is fixed (0.1), so the problem is equally hard at every D (a bulk whose trace grew
with D would degrade the single-pass recovery, whose error grows with the sum of the tail
eigenvalues; see ``curvsketch.sketch.seigh``). ``U`` is built by Cholesky QR in row blocks,
so that building it leaves no transient memory peak above ``U`` itself, and the modules of
every method are imported before the baseline is taken.

At every D (1e4 … 1e6; ``--quick``: up to 1e5) each method runs in its own subprocess:

* curvsketch singlepass (o, s = 2o), curvsketch hmt (o), curvsketch hmt p=1 (o),
  curvsketch krylov (k = o/2, basis m = o);
* skerch hmt (o) directly on the synthetic operator (there is no network for curvlinops),
  reported as "skerch hmt (synthetic op)";
* scipy eigsh: k = o/2 with ncv = o Lanczos vectors, tol 1e-4;
* hessian-eigenthings lanczos: k = o/2, m = o iterations, full reorthogonalisation;
* PyHessian power iteration: top 10, maxIter 100, tol 1e-3.

The child reports the wall seconds of the call, the products, its resident memory after
building the operator and its peak (``ru_maxrss``), and the top-10 eigenvalue error against
the known spectrum. The peak includes the product's own D × m output for the m vectors a
method multiplies at once (64 for the block methods, 1 for the single-vector ones). The
parent fits log-log slopes of seconds and of the memory above the operator against D per
method. Written to ``<out>/scaling_d.json`` after every point.

Usage:
    python -m benchmarks.suite.scaling_d [--quick] [--out benchmarks/out] [--dims 1e4 1e5 1e6]
        [--outer 100] [--rank 150] [--methods NAME ...] [--cap 1200] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.harness import (
    OUT_DIR,
    REPO_ROOT,
    log,
    maxrss_bytes,
    module_command,
    rss_bytes,
    run_info,
    set_threads,
    write_json,
)
from benchmarks.suite.methods import METHODS, Target, available_methods
from curvsketch.operators.protocol import LinearOperator

FULL_DIMS = [10_000, 30_000, 100_000, 300_000, 1_000_000]
QUICK_DIMS = [10_000, 30_000, 100_000]
DELTA_TRACE = 0.1  # δ = DELTA_TRACE / D
ROWS = 4096  # row block of the Cholesky QR


class LowRankPlusDiagonal(LinearOperator):
    """``U diag(λ) Uᵀ + δ I``, ``δ = DELTA_TRACE / D``, eigenvalues ``exact_eigenvalues``."""

    def __init__(self, dim: int, rank: int, seed: int, dtype: torch.dtype = torch.float32):
        gen = torch.Generator().manual_seed(seed)
        U = torch.randn(dim, rank, generator=gen, dtype=dtype)
        # Cholesky QR in row blocks: no D×r temporary besides U itself
        gram = torch.zeros(rank, rank, dtype=torch.float64)
        for i in range(0, dim, ROWS):
            block = U[i : i + ROWS].double()
            gram += block.T @ block
        L = torch.linalg.cholesky(gram)
        r_inv = torch.linalg.solve_triangular(L.T, torch.eye(rank, dtype=torch.float64), upper=True)
        for i in range(0, dim, ROWS):
            U[i : i + ROWS] = (U[i : i + ROWS].double() @ r_inv).to(dtype)
        lam = 1.0 / torch.arange(1, rank + 1, dtype=torch.float64)
        lam[1::2] *= -1
        self.U, self.lam, self.delta = U, lam.to(dtype), DELTA_TRACE / dim
        self.shape, self.dtype, self.device = (dim, dim), dtype, torch.device("cpu")
        ev = torch.cat([lam + self.delta, torch.full((1,), self.delta, dtype=torch.float64)])
        self.exact_eigenvalues = ev[ev.abs().argsort(descending=True)]

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        # one D×m result and r×m temporaries: δ·x + U (λ ∘ Uᵀx)
        return torch.addmm(x, self.U, self.lam[:, None] * (self.U.T @ x), beta=self.delta)


def budgets(outer: int) -> dict[str, tuple[int, dict]]:
    """(k, budget) of every method at size ``outer``."""
    half = max(1, outer // 2)
    return {
        "curvsketch singlepass": (half, {"o": outer}),
        "curvsketch hmt": (half, {"o": outer}),
        "curvsketch hmt p=1": (half, {"o": outer}),
        "curvsketch hmt p=2": (half, {"o": outer}),
        "curvsketch krylov": (half, {"m": outer}),
        "skerch hmt (curvlinops)": (half, {"o": outer}),
        "scipy eigsh": (half, {"tol": 1e-4, "ncv": outer}),
        "hessian-eigenthings lanczos": (half, {"m": outer}),
        "pyhessian power": (10, {"max_iter": 100, "tol": 1e-3}),
    }


DEFAULT_METHODS = [
    "curvsketch singlepass",
    "curvsketch hmt",
    "curvsketch hmt p=1",
    "curvsketch krylov",
    "skerch hmt (curvlinops)",
    "scipy eigsh",
    "hessian-eigenthings lanczos",
    "pyhessian power",
]


def child(args: argparse.Namespace) -> None:
    """One (method, D) point; prints one JSON line."""
    set_threads(args.threads)
    import contextlib
    import importlib

    for mod in ("scipy.sparse.linalg", "skerch.algorithms", "hessian_eigenthings", "pyhessian"):
        with contextlib.suppress(ImportError):  # imports are not the method's memory
            importlib.import_module(mod)
    base = maxrss_bytes()
    t0 = time.perf_counter()
    op = LowRankPlusDiagonal(args.dim, args.rank, seed=0)
    setup_seconds = time.perf_counter() - t0
    holder = nn.Module()
    holder.theta = nn.Parameter(torch.zeros(args.dim))
    target = Target(op_block=op, op_single=op, params=[holder.theta], model=holder)
    op @ torch.zeros(args.dim, 2)  # first product outside the timing
    setup_rss = rss_bytes()
    k, budget = budgets(args.outer)[args.child]
    out = METHODS[args.child].run(target, k, budget, 0)
    peak = maxrss_bytes()
    exact = op.exact_eigenvalues[: min(10, k)]
    got = out.eigenvalues[: len(exact)].double()
    err = float(((exact - got).abs() / exact.abs()).max()) if len(got) == len(exact) else None
    print(
        json.dumps(
            {
                "seconds": out.seconds,
                "cpu_seconds": out.cpu_seconds,
                "products": out.products,
                "k": k,
                "budget": budget,
                "setup_seconds": setup_seconds,
                "rss_before_setup_bytes": base,
                "rss_after_setup_bytes": setup_rss,
                "peak_rss_bytes": peak,
                "extra_peak_bytes": max(peak - setup_rss, 0),
                "operator_bytes": op.U.numel() * op.U.element_size(),
                "top10_rel_err": err,
            }
        )
    )


def fit_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x (None with fewer than two points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if y > 0]
    if len(pts) < 2:
        return None
    a = np.array(pts)
    return float(np.polyfit(a[:, 0], a[:, 1], 1)[0])


def slopes(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    out = {}
    for name in dict.fromkeys(r["method"] for r in rows):
        ok = [r for r in rows if r["method"] == name and r["status"] == "ok"]
        out[name] = {
            "time_slope": fit_slope([r["dim"] for r in ok], [r["seconds"] for r in ok]),
            "memory_slope": fit_slope([r["dim"] for r in ok], [r["extra_peak_bytes"] for r in ok]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"D up to {QUICK_DIMS[-1]:,}")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--dims", type=float, nargs="+", default=None)
    parser.add_argument("--outer", type=int, default=100, help="fixed size o")
    parser.add_argument("--rank", type=int, default=150, help="rank r of the synthetic operator")
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS))
    parser.add_argument(
        "--cap", type=float, default=None, help="seconds per point (1200; quick 60)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    dims = [int(d) for d in (args.dims or (QUICK_DIMS if args.quick else FULL_DIMS))]
    cap = args.cap if args.cap is not None else (60.0 if args.quick else 1200.0)
    methods = available_methods(args.methods or DEFAULT_METHODS)
    path = args.out / "scaling_d.json"
    payload: dict[str, Any] = {
        "meta": {**run_info(args), "dims": dims, "cap_seconds": cap, "delta_trace": DELTA_TRACE},
        "rows": [],
        "slopes": {},
    }
    for method in methods:
        for dim in dims:
            cmd = module_command("benchmarks.suite.scaling_d", "--child", method.name)
            cmd += ["--dim", str(dim)]
            cmd += ["--outer", str(args.outer), "--rank", str(args.rank)]
            cmd += ["--threads", str(args.threads)]
            # no network here: skerch multiplies with the synthetic operator itself
            label = method.name.replace("(curvlinops)", "(synthetic op)")
            row: dict[str, Any] = {"method": label, "family": method.family, "dim": dim}
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=cap, cwd=REPO_ROOT
                )
            except subprocess.TimeoutExpired:
                row.update(status="timeout", cap=cap, wall=time.perf_counter() - t0)
            else:
                if proc.returncode == 0:
                    row.update(status="ok", **json.loads(proc.stdout.strip().splitlines()[-1]))
                else:
                    tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    row.update(status=f"error (exit {proc.returncode}): {tail}")
            payload["rows"].append(row)
            payload["slopes"] = slopes(payload["rows"])
            write_json(path, payload)
            if row["status"] == "ok":
                log(
                    f"{label:28s} D={dim:>9,d}: {row['seconds']:8.2f} s, "
                    f"{row['products']} products, peak {row['peak_rss_bytes'] / 2**20:7.0f} MiB "
                    f"(+{row['extra_peak_bytes'] / 2**20:.0f} over the operator), "
                    f"top-10 rel. err {row['top10_rel_err']}"
                )
            else:
                log(f"{label:28s} D={dim:>9,d}: {row['status']}")
                if row["status"] == "timeout":
                    break  # larger D would time out too
    for name, s in payload["slopes"].items():
        log(f"{name:28s} slope time {s['time_slope']}, memory {s['memory_slope']}")
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
