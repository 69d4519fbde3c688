"""Write ``benchmarks/REPORT.md`` and its plots from the suite's JSON files.

Reads ``problems.json``, ``accuracy_cost.json``, ``scaling_k.json`` and ``scaling_d.json``
from ``--out`` (default ``benchmarks/out``); a missing file gives a line saying what to
run instead of a section. Plots (matplotlib, Agg) go to ``--results`` (default
``benchmarks/results``) as ``suite_*.png``. Every speed comparison in the report is a ratio
of two measurements from the same run of the same script; each section names the exact
command that produced its file, the machine, and the versions of curvsketch and of every
neighbour.

Usage:
    python -m benchmarks.suite.make_report [--out benchmarks/out] [--results benchmarks/results]
        [--report benchmarks/REPORT.md] [--prefix suite_]

The JSON files of the last full run are kept as ``benchmarks/results/suite_*.json``:
``--out benchmarks/results --prefix suite_`` rewrites the report from them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness import BENCH_DIR, OUT_DIR, RESULTS_DIR
from benchmarks.harness import markdown_table as _markdown_table

RUN = {
    "problems.json": "python -m benchmarks.suite.problems",
    "accuracy_cost.json": "python -m benchmarks.suite.accuracy_cost",
    "scaling_k.json": "python -m benchmarks.suite.scaling_k",
    "scaling_d.json": "python -m benchmarks.suite.scaling_d",
}
EIG_TARGET, OVERLAP_TARGET = 0.01, 0.99


def markdown_table(headers, rows, align: str = "") -> str:
    """``harness.markdown_table`` with ``|`` escaped inside cells (|λ| would split a cell)."""
    return _markdown_table(headers, rows, align, escape=True)


def load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / name
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def missing(name: str) -> str:
    return (
        f"*`{name}` not found: run `{RUN[name]}` (add `--quick` for a smoke run), or "
        "`make bench`, then this script again.*\n\n"
    )


def fmt(x: Any, spec: str = ".2e") -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    return format(x, spec)


def rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def provenance(name: str, data: dict[str, Any]) -> str:
    """Where a file came from: the command, machine, versions, load, quick or full."""
    meta = data.get("meta", {})
    m = meta.get("machine", {})
    v = meta.get("versions", {})
    git = meta.get("git", {})
    quick = meta.get("args", {}).get("quick")
    size = (
        "**quick run: tiny stand-in sizes, for checking that the suite runs, not for conclusions**"
        if quick
        else "full size"
    )
    vers = ", ".join(f"{k} {val}" for k, val in v.items() if val) or "unknown"
    commit = (git.get("commit") or "?")[:10] + (
        " (uncommitted changes)" if git.get("dirty") else ""
    )
    return (
        f"`{name}`: {size}. Command: `{meta.get('command', '?')}` (in `{meta.get('cwd', '?')}`), "
        f"started {meta.get('started', '?')}, load average at start "
        f"{fmt(meta.get('load_avg_at_start'), '.2f')}. Machine: {m.get('platform', '?')}, "
        f"{m.get('processor', '?')}, {m.get('cpus', '?')} CPUs, torch threads "
        f"{m.get('threads', '?')}{', ' + m['cuda_device'] if m.get('cuda_device') else ''}. "
        f"Versions: {vers}. Commit {commit}.\n"
    )


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _log_axes(ax, xlabel: str, ylabel: str) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)


MARKERS = "os^vD<>Pxh*"


def style(methods: list[str]) -> dict[str, dict[str, Any]]:
    return {
        m: {"marker": MARKERS[i % len(MARKERS)], "color": f"C{i % 10}"}
        for i, m in enumerate(methods)
    }


# --------------------------------------------------------------------------- sections


def section_problems(data: dict[str, Any] | None, acc: dict[str, Any] | None) -> str:
    problems = (data or {}).get("problems") or (acc or {}).get("problems")
    lines = ["## Problems and the cost of one product", ""]
    if not problems:
        return "\n".join(lines) + "\n" + missing("problems.json")
    src = data if data and data.get("problems") else acc
    lines += [provenance("problems.json" if src is data else "accuracy_cost.json", src), ""]
    rows = []
    for p in problems.values():
        r = p["reference"]
        resid = fmt(r.get("max_rel_residual"), ".1e") if "max_rel_residual" in r else "exact"
        rows.append(
            [
                p["title"],
                f"{p['D']:,}",
                p["samples"],
                p["dtype"],
                f"{r['kind']} ({r['dtype']})",
                f"{r['seconds']:.1f}",
                r["products"],
                resid,
                ", ".join(f"{v:.4g}" for v in p["top10_reference"][:3]),
            ]
        )
    lines.append(
        markdown_table(
            [
                "problem",
                "D",
                "samples",
                "products in",
                "reference",
                "ref. s",
                "ref. products",
                "max ‖Hu−λu‖/|λ|",
                "top-3 λ",
            ],
            rows,
            "lrrllrrrl",
        )
    )
    lines += [
        "",
        "Seconds per Hessian-vector product of every implementation on the same model and "
        "500 samples, measured in the same run: after one warm-up each, all are timed in "
        "turn for several interleaved rounds and the fastest round is kept (the estimate "
        "least disturbed by other jobs on a shared machine); ratios are to the fastest "
        "curvsketch engine on blocks of 64. "
        "Single-vector solvers (eigsh, Lanczos, power iteration) run on the curvsketch engine "
        "fastest on one vector, block solvers on the one fastest on blocks of 64.",
        "",
    ]
    for key, p in problems.items():
        costs = p.get("operator_costs") or []
        if not costs:
            continue
        ours = [c for c in costs if c["impl"].startswith("curvsketch") and c["block"] > 1]
        base = min(c["seconds_per_vector"] for c in ours) if ours else None
        lines += [f"Problem {key} (engines chosen: {p.get('engines')}):", ""]
        lines.append(
            markdown_table(
                ["implementation", "block", "ms / vector", "÷ best curvsketch block"],
                [
                    [
                        c["impl"],
                        c["block"],
                        f"{c['seconds_per_vector'] * 1e3:.3f}",
                        f"{c['seconds_per_vector'] / base:.2f}" if base else "–",
                    ]
                    for c in costs
                ],
                "lrrr",
            )
        )
        lines.append("")
    return "\n".join(lines) + "\n"


def _hit(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fastest run (wall seconds) meeting the target, or None."""
    ok = [
        r
        for r in rows
        if r["status"] == "ok"
        and r.get("eig_err") is not None
        and r["eig_err"] <= EIG_TARGET
        and r["overlap"] >= OVERLAP_TARGET
    ]
    return min(ok, key=lambda r: r["seconds"]) if ok else None


def _cost(r: dict[str, Any]) -> str:
    cpu = r.get("cpu_seconds")
    return f"{r['products']} products, {r['seconds']:.2f} s" + (
        f" ({cpu:.2f} cpu s)" if cpu is not None else ""
    )


def _best_per_method(rows: list[dict[str, Any]]) -> list[list[Any]]:
    names = list(dict.fromkeys(r["method"] for r in rows))
    hits = {n: _hit([r for r in rows if r["method"] == n]) for n in names}
    ours = [h for n, h in hits.items() if h and n.startswith("curvsketch")]
    best_ours = min(ours, key=lambda r: r["seconds"]) if ours else None
    out = []
    for name in names:
        rs = [r for r in rows if r["method"] == name and r["status"] == "ok"]
        bad = [r for r in rows if r["method"] == name and r["status"] != "ok"]
        scored = [r for r in rs if r.get("eig_err") is not None]
        hit = hits[name]
        best = min(scored, key=lambda r: (r["eig_err"], -r["overlap"])) if scored else None
        ratio = "–"
        if hit and best_ours and not name.startswith("curvsketch"):
            ratio = f"{hit['seconds'] / best_ours['seconds']:.2f}"
            if hit.get("cpu_seconds") and best_ours.get("cpu_seconds"):
                ratio += f" / {hit['cpu_seconds'] / best_ours['cpu_seconds']:.2f}"
        out.append(
            [
                name,
                len(rs) + len(bad),
                f"{hit['budget_label']}: {_cost(hit)}" if hit else "not on the ladder",
                ratio,
                f"{fmt(best['eig_err'])} / {best['overlap']:.4f} / {fmt(best['mask_overlap_err'])}"
                if best
                else "–",
                _cost(best) if best else "–",
                bad[0]["status"][:60] if bad else "",
            ]
        )
    return out


def plot_accuracy(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    plt = _plt()
    methods = list(dict.fromkeys(r["method"] for r in rows))
    st = style(methods)
    metrics = [
        ("eig_err", "max$_{i≤k}|λ_i-\\hat λ_i|/|λ_k|$"),
        ("one_minus_overlap", "1 − subspace overlap"),
        ("mask_overlap_err", "|Δ mask overlap|"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for row_i, (xkey, xlabel) in enumerate(
        (("products", "operator products"), ("seconds", "wall seconds"))
    ):
        for col, (ykey, ylabel) in enumerate(metrics):
            ax = axes[row_i, col]
            for m in methods:
                rs = [r for r in rows if r["method"] == m and r.get("eig_err") is not None]
                if not rs:
                    continue
                xs = [r[xkey] for r in rs]
                vals = [1 - r["overlap"] if ykey == "one_minus_overlap" else r[ykey] for r in rs]
                ys = [max(v, 1e-16) for v in vals]
                ax.plot(xs, ys, label=m, **st[m], linestyle="-", markersize=5)
            if ykey == "eig_err":
                ax.axhline(EIG_TARGET, color="grey", lw=0.8, ls="--")
            if ykey == "one_minus_overlap":
                ax.axhline(1 - OVERLAP_TARGET, color="grey", lw=0.8, ls="--")
            _log_axes(ax, xlabel, ylabel)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section_accuracy(data: dict[str, Any] | None, results: Path, report_dir: Path) -> str:
    lines = ["## Accuracy against cost", ""]
    if not data:
        return "\n".join(lines) + "\n" + missing("accuracy_cost.json")
    lines += [
        provenance("accuracy_cost.json", data),
        "",
        "Per method, the budget ladder was walked in one run on the same operator, with "
        f"{data['meta'].get('cap_seconds')} s per method, problem and k (the run crossing "
        "it was stopped and ended the ladder). Errors: top-k eigenvalue error "
        "max_{i≤k}|λ_i−λ̂_i|/|λ_k| (paired by "
        "sign, `methods.eigenvalue_error`), subspace overlap ‖U_kᵀÛ_k‖_F²/k, and |Δ mask overlap| "
        "of the top-k magnitude mask against the reference. 'Cheapest run meeting the "
        f"target' means eigenvalue error ≤ {EIG_TARGET} and overlap ≥ {OVERLAP_TARGET}, "
        "taken by wall seconds. Seconds on a shared machine are noisy; products are exact.",
        "",
    ]
    rows = data["rows"]
    for key, p in data.get("problems", {}).items():
        for k in dict.fromkeys(r["k"] for r in rows if r["problem"] == key):
            rs = [r for r in rows if r["problem"] == key and r["k"] == k]
            png = results / f"suite_accuracy_{key}_k{k}.png"
            plot_accuracy(rs, f"{p['title']}: top-{k}", png)
            lines += [f"### {p['title']}, k = {k}", ""]
            lines.append(
                markdown_table(
                    [
                        "method",
                        "runs",
                        "fastest run meeting the target",
                        "÷ fastest curvsketch (wall / cpu)",
                        "best eig. err / overlap / |Δ mask|",
                        "its cost",
                        "stopped by",
                    ],
                    _best_per_method(rs),
                    "lrlrlll",
                )
            )
            lines += ["", f"![accuracy vs cost]({rel(png, report_dir)})", ""]
            detail = markdown_table(
                [
                    "method",
                    "budget",
                    "products",
                    "seconds",
                    "cpu s",
                    "eig. err",
                    "overlap",
                    "|Δ mask|",
                    "status",
                ],
                [
                    [
                        r["method"],
                        r["budget_label"],
                        r.get("products", "–"),
                        fmt(r.get("seconds"), ".2f"),
                        fmt(r.get("cpu_seconds"), ".2f"),
                        fmt(r.get("eig_err")),
                        fmt(r.get("overlap"), ".4f"),
                        fmt(r.get("mask_overlap_err")),
                        r["status"],
                    ]
                    for r in rs
                ],
                "llrrrrrrl",
            )
            lines += ["<details><summary>all runs</summary>", "", detail, "", "</details>", ""]
    return "\n".join(lines) + "\n"


def plot_scaling_k(data: dict[str, Any], path: Path) -> None:
    plt = _plt()
    summary = sorted(data.get("summary", []), key=lambda s: s["k"])
    methods = list(dict.fromkeys(m for s in summary for m in s["methods"]))
    st = style(methods)
    caps = {s["k"]: s.get("cap_seconds", data["meta"].get("cap_seconds")) for s in summary}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for m in methods:
        for ax, key in zip(axes, ("seconds", "products"), strict=True):
            pts = [
                (s["k"], s["methods"][m][key])
                for s in summary
                if s["methods"].get(m, {}).get("status") == "reached"
            ]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=m, **st[m])
        missed = [
            s["k"]
            for s in summary
            if s["methods"].get(m, {}).get("status", "").startswith("not reached within")
        ]
        if missed:
            axes[0].plot(
                missed,
                [caps[k] for k in missed],
                linestyle="none",
                marker="^",
                color=st[m]["color"],
                markerfacecolor="none",
                label=f"{m} (not reached)",
            )
    for ax, label in zip(axes, ("wall seconds to target", "products to target"), strict=True):
        _log_axes(ax, "k", label)
    axes[0].plot(list(caps), list(caps.values()), color="grey", lw=0.8, ls="--", label="cap")
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"time to max rel. eig. err ≤ {EIG_TARGET} and overlap ≥ {OVERLAP_TARGET} "
        "(open triangles: not reached within the cap of that k)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


STAGES = ("measure", "qr", "core", "eigh", "eigvec")


def stage_table(rows: list[dict[str, Any]]) -> list[str]:
    """Where the time of each curvsketch run went: seconds per stage of ``res.timings``.

    ``measure`` is the operator products (and the test-matrix draws), ``qr`` the
    orthogonalisation, ``core`` the small projected problem, ``eigh``/``eigvec`` its
    eigendecomposition and the Ritz vectors; ``other`` is the wall time outside these.
    """
    runs = [r for r in rows if r.get("info", {}).get("timings") and r["status"] == "ok"]
    if not runs:
        return []
    table = []
    for r in runs:
        t = r["info"]["timings"]
        staged = sum(t.get(st, 0.0) for st in STAGES)
        table.append(
            [
                r["method"],
                r["budget_label"],
                r["products"],
                f"{r['seconds']:.2f}",
                *(
                    f"{t[st]:.2f} ({100 * t[st] / r['seconds']:.0f}%)" if st in t else "–"
                    for st in STAGES
                ),
                f"{r['seconds'] - staged:.2f}",
            ]
        )
    return [
        "Where curvsketch's time went (seconds per stage, `EighResult.timings`; "
        "`measure` = operator products):",
        "",
        markdown_table(
            ["method", "budget", "products", "seconds", *STAGES, "other"],
            table,
            "llrrrrrrrr",
        ),
        "",
    ]


def section_scaling_k(data: dict[str, Any] | None, results: Path, report_dir: Path) -> str:
    lines = ["## Time to a fixed accuracy as k grows (problem b)", ""]
    if not data:
        return "\n".join(lines) + "\n" + missing("scaling_k.json")
    t = data["meta"].get("target", {})
    lines += [
        provenance("scaling_k.json", data),
        "",
        f"Problem: {data['problem']['title']}. Target: eigenvalue error ≤ "
        f"{t.get('eig_err_max')}·|λ_k| and overlap ≥ {t.get('overlap_min')}. Each method "
        "walked up its ladder until one run met the target; the time is that run's wall "
        "seconds. Each method had the cap of its k (below) for its whole ladder; all methods "
        "of one k ran in one invocation, so the ratios of a k are of measurements from one "
        "run. The eigenvalue error pairs the eigenvalues by sign (`methods.eigenvalue_error`); "
        "`eig_err_magnitude_order` in the JSON rows pairs them in |λ| order instead.",
        "",
    ]
    runs = data["meta"].get("invocations")
    if runs:
        lines += ["Invocations (appended with `--append`):", ""]
        lines += [
            f"- `{r.get('command', '?')}`, started {r.get('started', '?')}, load average "
            f"{fmt(r.get('load_avg_at_start'), '.2f')}"
            for r in runs
        ]
        lines.append("")
    for s in sorted(data.get("summary", []), key=lambda s: s["k"]):
        lines += [f"### k = {s['k']}", ""]
        if s.get("command"):
            lines += [f"Cap {s.get('cap_seconds')} s per method; `{s['command']}`.", ""]
        rows = []
        for name, v in s["methods"].items():
            rows.append(
                [
                    name,
                    v["status"],
                    fmt(v.get("seconds"), ".2f"),
                    fmt(v.get("cpu_seconds"), ".2f"),
                    v.get("products", "–"),
                    v.get("budget", "–"),
                    fmt(v.get("eig_err")),
                    fmt(v.get("overlap"), ".4f"),
                    f"{v.get('runs', 0)} runs, {v.get('ladder_seconds', 0):.1f} s",
                ]
            )
        lines.append(
            markdown_table(
                [
                    "method",
                    "status",
                    "seconds",
                    "cpu s",
                    "products",
                    "budget",
                    "eig. err",
                    "overlap",
                    "ladder walked",
                ],
                rows,
                "llrrrlrrl",
            )
        )
        lines.append("")
        if s.get("best_curvsketch"):
            for key, r in s["ratios"].items():
                if r.get("time_ratio") is not None:
                    lines.append(
                        f"- {key}: time ratio **{r['time_ratio']:.2f}** (CPU-time ratio "
                        f"{fmt(r.get('cpu_time_ratio'), '.2f')}), products ratio "
                        f"{r['product_ratio']:.2f}"
                    )
                elif r.get("time_ratio_lower_bound") is not None:
                    lines.append(
                        f"- {key}: time ratio > {r['time_ratio_lower_bound']:.2f} (not reached "
                        "within the cap; bound from its longest run that missed the target)"
                    )
                else:
                    lines.append(f"- {key}: no ratio ({r.get('note')})")
        else:
            lines.append("- no curvsketch variant reached the target: no ratios")
        lines.append("")
        rs = [r for r in data["rows"] if r["k"] == s["k"]]
        lines += stage_table(rs)
        if any(r.get("eig_err") is not None for r in rs):
            acc_png = results / f"suite_scaling_k_accuracy_k{s['k']}.png"
            plot_accuracy(rs, f"{data['problem']['title']}: top-{s['k']}", acc_png)
            lines += [
                "Accuracy against cost of every run of the ladders above (a ladder stops at "
                "the first run meeting the target or at the cap):",
                "",
                f"![accuracy vs cost, k = {s['k']}]({rel(acc_png, report_dir)})",
                "",
            ]
    png = results / "suite_scaling_k.png"
    if data.get("summary"):
        plot_scaling_k(data, png)
        lines += [f"![time to target against k]({rel(png, report_dir)})", ""]
    return "\n".join(lines) + "\n"


def plot_scaling_d(data: dict[str, Any], path: Path) -> None:
    plt = _plt()
    rows = [r for r in data["rows"] if r["status"] == "ok"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    st = style(methods)
    slopes = data.get("slopes", {})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for m in methods:
        rs = sorted((r for r in rows if r["method"] == m), key=lambda r: r["dim"])
        sl = slopes.get(m, {})
        axes[0].plot(
            [r["dim"] for r in rs],
            [r["seconds"] for r in rs],
            **st[m],
            label=f"{m} (slope {fmt(sl.get('time_slope'), '.2f')})",
        )
        mem = [(r["dim"], r["extra_peak_bytes"] / 2**20) for r in rs if r["extra_peak_bytes"] > 0]
        if mem:
            axes[1].plot(
                *zip(*mem, strict=True),
                **st[m],
                label=f"{m} (slope {fmt(sl.get('memory_slope'), '.2f')})",
            )
    for ax, label in zip(axes, ("wall seconds", "peak RSS above the operator (MiB)"), strict=True):
        _log_axes(ax, "D", label)
        ax.legend(fontsize=7)
    fig.suptitle(
        "fixed size o = " + str(data["meta"]["args"].get("outer")) + ", synthetic operator"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section_scaling_d(data: dict[str, Any] | None, results: Path, report_dir: Path) -> str:
    lines = ["## Time and memory against D (synthetic operator)", ""]
    if not data:
        return "\n".join(lines) + "\n" + missing("scaling_d.json")
    args = data["meta"]["args"]
    lines += [
        provenance("scaling_d.json", data),
        "",
        f"H = U diag(±1/i) Uᵀ + δI with rank {args.get('rank')}, δ = "
        f"{data['meta'].get('delta_trace')}/D; o = {args.get('outer')} (sketches: o, "
        "singlepass s = 2o; eigsh: k = o/2, ncv = o; Lanczos: k = o/2, m = o; PyHessian: "
        "top 10). One subprocess per point; memory is the peak RSS (ru_maxrss) above the "
        "resident size after building the operator. Slopes: least-squares fits of log "
        "seconds and log memory against log D.",
        "",
    ]
    rows = data["rows"]
    dims = sorted(dict.fromkeys(r["dim"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    table = []
    for m in methods:
        cells = [m]
        for d in dims:
            r = next((r for r in rows if r["method"] == m and r["dim"] == d), None)
            if r is None:
                cells.append("–")
            elif r["status"] != "ok":
                cells.append(r["status"][:30])
            else:
                cpu = r.get("cpu_seconds")
                cpu_s = f" ({cpu:.2f} cpu)" if cpu is not None else ""
                cells.append(
                    f"{r['seconds']:.2f} s{cpu_s} / {r['extra_peak_bytes'] / 2**20:.0f} MiB"
                )
        sl = data.get("slopes", {}).get(m, {})
        cells += [fmt(sl.get("time_slope"), ".2f"), fmt(sl.get("memory_slope"), ".2f")]
        table.append(cells)
    lines.append(
        markdown_table(
            ["method", *[f"D = {d:,}" for d in dims], "time slope", "memory slope"],
            table,
            "l" + "r" * (len(dims) + 2),
        )
    )
    lines.append("")
    big = max(dims) if dims else None
    ok_big = {r["method"]: r for r in rows if r["dim"] == big and r["status"] == "ok"}
    ours = {m: r for m, r in ok_big.items() if r["family"] == "curvsketch"}
    if ours:
        best = min(ours, key=lambda m: ours[m]["seconds"])
        lines.append(f"At D = {big:,}, ratios to the fastest curvsketch variant ({best}):")
        lines.append("")
        for m, r in ok_big.items():
            if m == best:
                continue
            mem = r["extra_peak_bytes"] / max(ours[best]["extra_peak_bytes"], 1)
            cpu = (
                f" (CPU time {r['cpu_seconds'] / ours[best]['cpu_seconds']:.2f}×)"
                if r.get("cpu_seconds") and ours[best].get("cpu_seconds")
                else ""
            )
            lines.append(
                f"- {m}: time {r['seconds'] / ours[best]['seconds']:.2f}×{cpu}, peak memory "
                f"above the operator {mem:.2f}×"
            )
        lines.append("")
    png = results / "suite_scaling_d.png"
    if any(r["status"] == "ok" for r in rows):
        plot_scaling_d(data, png)
        lines += [f"![time and memory against D]({rel(png, report_dir)})", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="JSON inputs")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="PNG dir")
    parser.add_argument("--report", type=Path, default=BENCH_DIR / "REPORT.md")
    parser.add_argument("--quick", action="store_true", help="accepted for `make bench`; no-op")
    parser.add_argument(
        "--prefix",
        default="",
        help="prefix of the JSON names in --out ('suite_' for the copies kept in results/)",
    )
    parser.add_argument("--threads", type=int, default=None, help="accepted; no-op")
    args, _ = parser.parse_known_args()  # the other scripts' options (BENCH_ARGS) are ignored
    args.results.mkdir(parents=True, exist_ok=True)
    report_dir = args.report.resolve().parent
    results = args.results.resolve()
    problems = load(args.out, args.prefix + "problems.json")
    acc = load(args.out, args.prefix + "accuracy_cost.json")
    sk = load(args.out, args.prefix + "scaling_k.json")
    sd = load(args.out, args.prefix + "scaling_d.json")
    quick = any(
        d and d.get("meta", {}).get("args", {}).get("quick") for d in (problems, acc, sk, sd)
    )
    cmd = " ".join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    head = [
        "# curvsketch against its neighbours: accuracy, cost, scaling",
        "",
        f"Written by `{cmd}` from the JSON files in `{rel(args.out.resolve(), report_dir)}`. "
        "Neighbours: scipy `eigsh` (ARPACK) on curvsketch's operator, skerch 1.2 `seigh` on "
        "curvlinops 3.0.1's `HessianLinearOperator`, hessian-eigenthings' Lanczos with full "
        "reorthogonalisation and PyHessian's deflated power iteration (both on curvsketch's "
        "operator, see `benchmarks/suite/methods.py` for why). Regenerate everything with "
        "`make bench` (full size) or `make bench BENCH_ARGS=--quick`; rewrite this report from "
        "the JSON kept in `benchmarks/results/` with `python -m benchmarks.suite.make_report "
        "--out benchmarks/results --prefix suite_`.",
        "",
    ]
    if quick:
        head += [
            "> **Quick run.** At least one input comes from a `--quick` run: tiny stand-in "
            "problems and short ladders, meant to show that the suite runs end to end. Its "
            "numbers say nothing about the full-size comparison.",
            "",
        ]
    loads = [
        d["meta"].get("load_avg_at_start")
        for d in (problems, acc, sk, sd)
        if d and d.get("meta", {}).get("load_avg_at_start") is not None
    ]
    cpus = next((d["meta"]["machine"].get("cpus") for d in (problems, acc, sk, sd) if d), None)
    if loads and cpus and max(loads) > 0.5 * cpus:
        head += [
            f"> **Load.** The 1-minute load average at the start of the runs was "
            f"{min(loads):.1f}–{max(loads):.1f} on {cpus} CPUs. When the scripts run back to "
            "back (`make bench`, or a chain of invocations) this counts the suite's own "
            "previous step, whose average decays over minutes; other jobs would also show "
            "here. On a busy machine wall seconds swing by large factors (the same run was "
            "seen 10–70× slower on a shared one), worst for solvers that loop over many small "
            "operations (Lanczos' Gram–Schmidt, power iteration). Products are exact; the "
            "CPU seconds beside every wall time do not count time spent waiting for a CPU "
            "and serve as a check: where wall and CPU-time ratios agree, the ratio was not "
            "bent by contention. On a loaded machine, `--threads 1` gives steadier numbers.",
            "",
        ]
    text = "\n".join(head) + "\n"
    text += section_problems(problems, acc)
    text += section_accuracy(acc, results, report_dir)
    text += section_scaling_k(sk, results, report_dir)
    text += section_scaling_d(sd, results, report_dir)
    args.report.write_text(text)
    print(f"wrote {args.report} and plots under {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
