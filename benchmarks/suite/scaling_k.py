"""Time to a fixed accuracy as the number of eigenpairs k grows, on problem (b).

For k in {50, 200, 1000} (``--quick``: {10, 50} on the quick stand-in), every method of
``methods.py`` walks up its budget ladder (sketch size, eigsh tolerance, Lanczos
iterations, power-iteration steps) until a run meets the target

    max_{i≤k} |λ_i − λ̂_i| ≤ 0.01·|λ_k|   and   ‖U_kᵀ Û_k‖_F² / k ≥ 0.99

against the eigsh reference. The first run that meets it gives the method's time to target
(the wall seconds of that run alone: what a user who knew the budget would pay) and its
products. Each method gets ``--cap`` seconds per k to walk its ladder; the run that crosses
the cap is stopped and the method is recorded as "not reached within CAP s"; a ladder that
ends without meeting the target is recorded as such. Per k, the time ratios of each
neighbour to the best curvsketch variant come from this one run (for a neighbour stopped by
the cap, the lower bound is the longest of its runs that missed the target, completed or
stopped, ÷ the best curvsketch time: a run that meets the target has a larger budget than
every run before it on the ladder, assumed to take at least as long).

Writes ``<out>/scaling_k.json`` after every run. With ``--append`` the rows of an earlier
``scaling_k.json`` for other (k, method) pairs are kept (and its commands listed), so that
the expensive k = 1000 ladders and the cheaper ones can run as separate, quiet invocations
with their own caps. Run all methods of one k in one invocation: the ratios of a k then
come from one run (each row records its ``invocation``, an index into
``meta.invocations``).

Usage:
    python -m benchmarks.suite.scaling_k [--quick] [--out benchmarks/out] [--ks 50 200 1000]
        [--methods NAME ...] [--cap 1200] [--threads 2] [--append]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.harness import OUT_DIR, log, run_info, set_threads, write_json
from benchmarks.suite.methods import METHODS, available_methods, describe, measure, meets_target
from benchmarks.suite.problems import load_problem

FULL_KS = [50, 200, 1000]
QUICK_KS = [10, 50]
EIG_TOL = 0.01
OVERLAP_MIN = 0.99


def summarise(rows: list[dict[str, Any]], k: int, cap: float, names: list[str]) -> dict:
    """Per method the time to target (or why none), the best curvsketch, the ratios."""
    per: dict[str, dict[str, Any]] = {}
    for name in names:
        rs = [r for r in rows if r["k"] == k and r["method"] == name]
        hit = next((r for r in rs if r.get("meets_target")), None)
        if hit is not None:
            per[name] = {
                "status": "reached",
                "seconds": hit["seconds"],
                "cpu_seconds": hit.get("cpu_seconds"),
                "products": hit["products"],
                "budget": hit["budget_label"],
                "eig_err": hit["eig_err"],
                "overlap": hit["overlap"],
            }
        elif not rs:
            per[name] = {"status": "not run"}
        elif any(r["status"] == "timeout" for r in rs):
            stopped = max(r["seconds"] for r in rs if r["status"] == "timeout")
            missed = max(r["seconds"] for r in rs if r["status"] in ("ok", "timeout"))
            per[name] = {
                "status": f"not reached within {cap:g} s",
                "cap": cap,
                "stopped_run_seconds": stopped,
                "longest_missed_run_seconds": missed,
            }
        elif any(r["status"].startswith("error") for r in rs):
            per[name] = {"status": next(r["status"] for r in rs if r["status"] != "ok")}
        else:
            per[name] = {"status": f"not reached on its ladder (up to {rs[-1]['budget_label']})"}
        per[name]["runs"] = len(rs)
        per[name]["ladder_seconds"] = sum(r["seconds"] for r in rs)
    ours = {n: v for n, v in per.items() if METHODS[n].family == "curvsketch"}
    reached = {n: v for n, v in ours.items() if v["status"] == "reached"}
    out: dict[str, Any] = {"k": k, "methods": per, "best_curvsketch": None, "ratios": {}}
    if not reached:
        return out
    best = min(reached, key=lambda n: reached[n]["seconds"])
    t_best, p_best = reached[best]["seconds"], reached[best]["products"]
    c_best = reached[best].get("cpu_seconds")
    out["best_curvsketch"] = best
    for name, v in per.items():
        if METHODS[name].family == "curvsketch" or v["status"] == "not run":
            continue
        key = f"{name} / best curvsketch ({best})"
        if v["status"] == "reached":
            out["ratios"][key] = {
                "time_ratio": v["seconds"] / t_best,
                "product_ratio": v["products"] / p_best,
                "cpu_time_ratio": v["cpu_seconds"] / c_best
                if c_best and v.get("cpu_seconds") is not None
                else None,
            }
        elif v["status"].startswith("not reached within"):
            out["ratios"][key] = {
                "time_ratio_lower_bound": v["longest_missed_run_seconds"] / t_best
            }
        else:
            out["ratios"][key] = {"time_ratio": None, "note": v["status"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="quick stand-in of (b), k 10/50")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--ks", type=int, nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS))
    parser.add_argument(
        "--cap", type=float, default=None, help="seconds per method and k (1200; quick 60)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--append", action="store_true", help="keep earlier rows of other (k, method) pairs"
    )
    args = parser.parse_args()
    set_threads(args.threads)
    ks = args.ks or (QUICK_KS if args.quick else FULL_KS)
    cap = args.cap if args.cap is not None else (60.0 if args.quick else 1200.0)
    path = args.out / "scaling_k.json"

    problem = load_problem("b", args.quick, args.out)
    target = problem.target()
    ref = (problem.ref_values, problem.ref_vectors, problem.theta)
    methods = available_methods(args.methods)
    meta = {
        **run_info(args),
        "ks": ks,
        "cap_seconds": cap,
        "target": {"eig_err_max": EIG_TOL, "overlap_min": OVERLAP_MIN},
    }
    payload: dict[str, Any] = {
        "meta": meta,
        "problem": problem.summary(),
        "rows": [],
        "summary": [],
    }
    names = [m.name for m in methods]
    if args.append and path.exists():
        import json

        old = json.loads(path.read_text())
        mine = {(k, n) for k in ks for n in names}
        payload["rows"] = [r for r in old["rows"] if (r["k"], r["method"]) not in mine]
        runs = old["meta"].get("invocations", [old["meta"]])
        meta["invocations"] = [*runs, {key: meta[key] for key in meta if key != "invocations"}]
        for r in payload["rows"]:
            r.setdefault("invocation", len(runs) - 1)
        payload["summary"] = [s for s in old.get("summary", []) if s["k"] not in ks]
    write_json(path, payload)
    for k in ks:
        if k > len(problem.ref_values):
            log(f"k={k} > reference size {len(problem.ref_values)}: skipped")
            continue
        for method in methods:
            ladder = method.ladder(k, problem.dim, args.quick)
            if not ladder:
                log(f"{method.name}: not run for k={k}")
            spent = 0.0
            for budget in ladder:
                if spent >= cap:
                    break
                row = measure(method, target, ref, k, budget, args.seed, cap - spent)
                row["invocation"] = len(meta.get("invocations", [meta])) - 1
                spent += row["seconds"]
                if row["status"] == "ok":
                    row["meets_target"] = meets_target(row, EIG_TOL, OVERLAP_MIN)
                payload["rows"].append(row)
                write_json(path, payload)
                hit = "  TARGET MET" if row.get("meets_target") else ""
                log(f"{describe(row)}{hit}")
                if row["status"] != "ok" or row.get("meets_target"):
                    break
        ran = {r["method"] for r in payload["rows"] if r["k"] == k}
        done = sorted(ran, key=list(METHODS).index)
        summary = summarise(payload["rows"], k, cap, done)
        summary["cap_seconds"], summary["command"] = cap, meta.get("command")
        payload["summary"] = [s for s in payload["summary"] if s["k"] != k] + [summary]
        write_json(path, payload)
        for key, r in summary["ratios"].items():
            log(f"k={k}: {key}: {r}")
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
