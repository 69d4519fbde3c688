"""Out-of-core block Krylov (#15 item 4): peak memory, seconds per stage, accuracy.

Operator: a diagonal ``H = diag(d)`` in float32, applied as ``d[:, None] * X`` (``O(D·b)`` per
block, so the run measures the Krylov machinery, not the operator). Its spectrum is known:
``d_i = 10·0.995^i`` with every third negated (zero in float32 beyond ``i ≈ 19,000``);
the eigenvector of ``d_i`` is ``e_i``. (A spectrum that falls to a flat bulk below
``100·eps·‖H‖`` makes block Krylov deflate; in float32 that lost orthogonality (~1e-3
here, 0.9 on a steeper fall) until the DGKS re-projections of
``curvsketch.sketch.gram_schmidt``; the figures below were measured before them, on a
spectrum without such a bulk.) The
Krylov basis vectors are dense all the same (the start block is the SSRFT test block).

Each configuration runs in a fresh subprocess (``--child``) so that ``ru_maxrss`` is its
own; a sampling thread also reads ``VmRSS`` from ``/proc/self/status`` every 0.1 s. The
out-of-core run uses ``seigh(op, k, m, recovery="krylov", block_size=b, store=PATH,
memory_budget=B)``; the in-memory run the same without store and budget. Reported: peak
RSS (absolute and above the process after imports and operator), seconds per stage
(``measure`` = products, ``qr`` = orthogonalisation including ``read`` = waiting for row
blocks of the basis from disk, ``eigh``, ``core``, ``eigvec``), products, the largest
relative error of the top-``k`` eigenvalues against ``d``, the sines of the angles between
the top-``k`` eigenvectors and ``e_i`` (from ``result.rows(range(k))``: one row chunk read),
and, when both ran, the out-of-core result against the in-memory one.

Usage::

    .venv/bin/python -m benchmarks.probes.krylov_outofcore --dim 200000 --budget 400000000 \\
        --memory --tag d2e5
    .venv/bin/python -m benchmarks.probes.krylov_outofcore --dim 1000000 --budget 2000000000 \\
        --tag d1e6

Writes ``benchmarks/results/krylov_outofcore.json`` (one entry per tag, merged) and
``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.harness import (
    REPO_ROOT,
    RESULTS_DIR,
    RssSampler,
    maxrss_bytes,
    module_command,
    rss_bytes,
)


def spectrum(dim: int) -> torch.Tensor:
    """The known eigenvalues (float64), in the order of the coordinates."""
    d = 10 * 0.995 ** torch.arange(dim, dtype=torch.float64)
    d[1::3] *= -1
    return d


class Diagonal:
    """``diag(d)`` as an operator (float32 products)."""

    def __init__(self, d: torch.Tensor) -> None:
        self.d = d.to(torch.float32)
        self.shape = (int(d.shape[0]), int(d.shape[0]))
        self.dtype, self.device = torch.float32, torch.device("cpu")

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return self.d[:, None] * x if x.ndim == 2 else self.d * x


def child(args: argparse.Namespace) -> None:
    from curvsketch.sketch import seigh

    torch.set_num_threads(args.threads)
    d = spectrum(args.dim)
    op = Diagonal(d)
    base = rss_bytes()
    sampler = RssSampler()
    sampler.start()
    kw = {"recovery": "krylov", "block_size": args.block, "progress": False}
    store = None
    t0 = time.perf_counter()
    if args.mode == "ooc":
        store = tempfile.mkdtemp(prefix="krylov_ooc_", dir=args.scratch)
        res = seigh(op, args.outer, args.inner, store=store + "/s", memory_budget=args.budget, **kw)
    else:
        res = seigh(op, args.outer, args.inner, **kw)
    wall = time.perf_counter() - t0
    k = args.outer
    t1 = time.perf_counter()
    head = res.rows(torch.arange(k))  # (k, k): the e_i components of the top k
    rows_s = time.perf_counter() - t1
    sampler.stop.set()
    sampler.join()
    order = torch.argsort(d.abs(), descending=True)[:k]
    exact = d[order]
    rel = (res.eigenvalues.double() - exact).abs() / exact.abs().max()
    cos = head.double().diagonal().abs()
    sample = torch.randperm(args.dim, generator=torch.Generator().manual_seed(1))[:20000]
    sample = sample[sample >= k]  # rows where the top k eigenvectors e_i are 0
    signed = res.rows(sample).double()
    off = signed.abs()  # the rounding noise of each eigenvector
    lam = float(exact.abs().max())
    resid = res.residual_norms.double() / lam
    out = {
        "mode": args.mode,
        "dim": args.dim,
        "inner": int(res.inner),
        "block": args.block,
        "outer": k,
        "budget_bytes": args.budget if args.mode == "ooc" else None,
        "basis_bytes": args.dim * int(res.inner) * 4,
        "products": int(res.num_products),
        "wall_s": wall,
        "rows_s": rows_s,
        "timings_s": {key: round(v, 3) for key, v in res.timings.items()},
        "peak_rss_bytes": maxrss_bytes(),
        "peak_vmrss_sampled_bytes": sampler.peak,
        "rss_after_setup_bytes": base,
        "eigenvalue_max_rel_error": {
            f"top{n}": float(rel[:n].max()) for n in (10, 50, 100, k) if n <= k
        },
        "eigenvector_min_abs_diagonal": {
            f"top{n}": float(cos[:n].min()) for n in (10, 50, k) if n <= k
        },
        "eigenvector_max_offdiagonal_sampled": {
            f"top{n}": float(off[:, :n].max()) for n in (10, 50, k) if n <= k
        },
        "residual_over_lambda1_max": {
            f"top{n}": float(resid[:n].max()) for n in (10, 50, k) if n <= k
        },
        "threads": torch.get_num_threads(),
    }
    torch.save(
        {"eigenvalues": res.eigenvalues, "sample": sample, "rows": signed}, args.output + ".pt"
    )
    Path(args.output).write_text(json.dumps(out, indent=1))
    if store is not None:
        shutil.rmtree(store, ignore_errors=True)


def run_child(args: argparse.Namespace, mode: str, scratch: str, tag: str) -> dict:
    out = os.path.join(scratch, f"{tag}_{mode}.json")
    cmd = module_command(
        "benchmarks.probes.krylov_outofcore",
        "--child",
        "--mode",
        mode,
        "--output",
        out,
        "--scratch",
        scratch,
        *(f"--{k}={v}" for k, v in (("dim", args.dim), ("inner", args.inner))),
        f"--block={args.block}",
        f"--outer={args.outer}",
        f"--budget={args.budget}",
        f"--threads={args.threads}",
    )
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    return json.loads(Path(out).read_text()) | {"_pt": out + ".pt"}


def compare(a: dict, b: dict) -> dict:
    """Out-of-core ``a`` against in-memory ``b``: eigenvalues and sampled eigenvector rows."""
    pa, pb = torch.load(a["_pt"]), torch.load(b["_pt"])
    va, vb = pa["eigenvalues"].double(), pb["eigenvalues"].double()
    ra, rb = pa["rows"].double(), pb["rows"].double()
    sign = torch.sign((ra * rb).sum(0))
    scale = float(vb.abs().max())
    return {
        "eigenvalues_max_rel_diff": float((va - vb).abs().max() / scale),
        "eigenvalues_top100_max_rel_diff": float((va[:100] - vb[:100]).abs().max() / scale),
        "eigenvector_rows_max_abs_diff_top10": float(
            (ra[:, :10] * sign[:10] - rb[:, :10]).abs().max()
        ),
        "eigenvector_rows_max_abs_diff_top100": float(
            (ra[:, :100] * sign[:100] - rb[:, :100]).abs().max()
        ),
        "float32_eps": float(torch.finfo(torch.float32).eps),
    }


def write_md(results: dict) -> None:
    lines = [
        "# Out-of-core block Krylov (#15 item 4)",
        "",
        "`benchmarks/probes/krylov_outofcore.py`: diagonal float32 operator with a known spectrum "
        "(`10·0.995^i`, every third negative), one subprocess per run. "
        "Peak RSS from `ru_maxrss` (and sampled VmRSS); stages in seconds.",
        "",
    ]
    gb = 1e9
    for tag, entry in results.items():
        lines.append(f"## {tag}")
        lines.append("")
        lines.append("| | " + " | ".join(r for r in entry["runs"]) + " |")
        lines.append("|---|" + "---|" * len(entry["runs"]))
        runs = list(entry["runs"].values())

        def row(name, fn, runs=runs):
            return f"| {name} | " + " | ".join(fn(r) for r in runs) + " |"

        lines += [
            row("D, m, b, k", lambda r: f"{r['dim']}, {r['inner']}, {r['block']}, {r['outer']}"),
            row(
                "budget / basis GB",
                lambda r: f"{(r['budget_bytes'] or 0) / gb:.2f} / {r['basis_bytes'] / gb:.2f}",
            ),
            row("peak RSS GB (maxrss)", lambda r: f"{r['peak_rss_bytes'] / gb:.3f}"),
            row("peak VmRSS sampled GB", lambda r: f"{r['peak_vmrss_sampled_bytes'] / gb:.3f}"),
            row("RSS after setup GB", lambda r: f"{r['rss_after_setup_bytes'] / gb:.3f}"),
            row("products", lambda r: str(r["products"])),
            row("wall s", lambda r: f"{r['wall_s']:.1f}"),
            *(
                row(f"{s} s", lambda r, s=s: f"{r['timings_s'].get(s, 0.0):.1f}")
                for s in ("measure", "qr", "read", "eigh", "core", "eigvec")
            ),
            row("rows(range(k)) s", lambda r: f"{r['rows_s']:.2f}"),
            row(
                "max rel err eigenvalues (top 10 / 100 / k)",
                lambda r: " / ".join(
                    f"{v:.1e}" for k, v in r["eigenvalue_max_rel_error"].items() if k != "top50"
                ),
            ),
            row(
                "min over i of abs(u_i[i]) - 1 (top 10 / 50 / k)",
                lambda r: " / ".join(
                    f"{v - 1:.1e}" for v in r["eigenvector_min_abs_diagonal"].values()
                ),
            ),
            row(
                "max abs u_i[s], s sampled != i (top 10 / 50 / k)",
                lambda r: " / ".join(
                    f"{v:.1e}" for v in r["eigenvector_max_offdiagonal_sampled"].values()
                ),
            ),
            row(
                "max residual / lambda_1 (top 10 / 50 / k)",
                lambda r: " / ".join(f"{v:.1e}" for v in r["residual_over_lambda1_max"].values()),
            ),
        ]
        if "ooc_vs_memory" in entry:
            c = entry["ooc_vs_memory"]
            lines += [
                "",
                "Out of core against in memory: eigenvalues max rel diff "
                f"{c['eigenvalues_max_rel_diff']:.1e} (top 100: "
                f"{c['eigenvalues_top100_max_rel_diff']:.1e}), eigenvector rows (20,000 "
                f"sampled, sign-aligned) max abs diff top 10 "
                f"{c['eigenvector_rows_max_abs_diff_top10']:.1e}, top 100 "
                f"{c['eigenvector_rows_max_abs_diff_top100']:.1e} (float32 eps "
                f"{c['float32_eps']:.1e}).",
            ]
        if entry.get("bound"):
            lines += ["", entry["bound"]]
        if entry.get("commands"):
            lines += ["", "Commands:", "", *(f"    {c}" for c in entry["commands"])]
        if entry.get("note"):
            lines += ["", entry["note"]]
        lines.append("")
    (RESULTS_DIR / "krylov_outofcore.md").write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=10**6)
    p.add_argument("--inner", type=int, default=2000)
    p.add_argument("--block", type=int, default=50)
    p.add_argument("--outer", type=int, default=200)
    p.add_argument("--budget", type=int, default=2 * 10**9)
    p.add_argument("--memory", action="store_true", help="also run in memory and compare")
    p.add_argument("--no-ooc", action="store_true", help="only the in-memory run")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    p.add_argument("--tag", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="ooc", help=argparse.SUPPRESS)
    p.add_argument("--output", default=None, help=argparse.SUPPRESS)
    p.add_argument("--scratch", default=None)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    RESULTS_DIR.mkdir(exist_ok=True)
    scratch = args.scratch or os.path.join(tempfile.gettempdir(), "krylov_ooc_bench")
    os.makedirs(scratch, exist_ok=True)  # kept: the rows of each run, for later comparisons
    tag = args.tag or f"D={args.dim}"
    path = RESULTS_DIR / "krylov_outofcore.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    entry = results.get(tag, {"runs": {}})
    try:
        if not args.no_ooc:
            entry["runs"]["ooc"] = run_child(args, "ooc", scratch, tag)
        if args.memory or args.no_ooc:
            entry["runs"]["memory"] = run_child(args, "memory", scratch, tag)
        for mode, r in entry["runs"].items():
            r["_pt"] = os.path.join(scratch, f"{tag}_{mode}.json.pt")
        both = "ooc" in entry["runs"] and "memory" in entry["runs"]
        if both and all(os.path.exists(r["_pt"]) for r in entry["runs"].values()):
            entry["ooc_vs_memory"] = compare(entry["runs"]["ooc"], entry["runs"]["memory"])
        if "ooc" in entry["runs"]:
            r = entry["runs"]["ooc"]
            m2 = r["inner"] ** 2 * 4
            limit = 1.5 * r["budget_bytes"] + m2
            entry["bound"] = (
                f"Done-when bound: peak RSS {r['peak_rss_bytes'] / 1e9:.3f} GB <= 1.5 × budget + "
                f"m² entries = {limit / 1e9:.3f} GB: {r['peak_rss_bytes'] <= limit}."
            )
        for r in entry["runs"].values():
            r.pop("_pt", None)
        command = " ".join(
            [".venv/bin/python", "-m", "benchmarks.probes.krylov_outofcore", *sys.argv[1:]]
        )
        entry.pop("command", None)
        entry["commands"] = [*entry.get("commands", []), command]
        results[tag] = entry
        path.write_text(json.dumps(results, indent=1))
        write_md(results)
        print(json.dumps(entry, indent=1))
    finally:
        for mode in ("ooc", "memory"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(scratch, f"{tag}_{mode}.json"))


if __name__ == "__main__":
    main()
