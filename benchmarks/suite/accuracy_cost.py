"""Accuracy against cost for every eigensolver on both problems, side by side in one run.

For each problem of ``problems.py`` (a: the paper's 7,030-parameter MLP, b: the ~100k MLP),
each target ``k`` and each method of ``methods.py`` (curvsketch singlepass / hmt / hmt with
1 and 2 power iterations / block Krylov, scipy eigsh, skerch on curvlinops,
hessian-eigenthings Lanczos, PyHessian power iteration for k <= 20), walk the method's
ladder of budgets (sketch size o, Krylov basis m, eigsh tol, Lanczos iterations,
power-iteration steps) and record, per run:

* products (vectors multiplied with the operator, counted by a wrapper) and wall seconds;
* the top-k eigenvalue error ``max_{i≤k}|λ_i − λ̂_i| / |λ_k|`` (paired by sign, see
  ``methods.eigenvalue_error``);
* the top-k subspace overlap ``‖U_refᵀ Û_k‖_F² / k``;
* the magnitude-mask overlap error ``|overlap_sketched − overlap_ref|`` for the top-k mask
  of ``|θ|``.

Each method gets ``--cap`` seconds per problem and k to walk its ladder: the run that
crosses the cap is stopped and ends the ladder. Every row is
written to ``<out>/accuracy_cost.json`` as soon as it is measured (``--resume`` keeps the
rows of an interrupted run and measures only the missing ones).

Usage:
    python -m benchmarks.suite.accuracy_cost [--quick] [--out benchmarks/out] [--problems a b]
        [--ks 10 50 200] [--methods NAME ...] [--seeds 1] [--cap 900] [--threads 2]
        [--resume]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.harness import OUT_DIR, log, run_info, set_threads, write_json
from benchmarks.suite.methods import METHODS, available_methods, budget_label, describe, measure
from benchmarks.suite.problems import load_problem

FULL_KS = [10, 50, 200]
QUICK_KS = [10]


def row_key(row: dict[str, Any]) -> tuple:
    return (row["problem"], row["k"], row["method"], row["budget_label"], row["seed"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny problems and ladders")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--problems", nargs="+", default=["a", "b"], choices=["a", "b"])
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="target k values")
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS))
    parser.add_argument("--seeds", type=int, default=1, help="seeds per budget")
    parser.add_argument(
        "--cap",
        type=float,
        default=None,
        help="seconds per method, problem and k (default 900, quick 60)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--resume", action="store_true", help="keep rows already measured")
    args = parser.parse_args()
    set_threads(args.threads)
    ks = args.ks or (QUICK_KS if args.quick else FULL_KS)
    cap = args.cap if args.cap is not None else (60.0 if args.quick else 900.0)
    path = args.out / "accuracy_cost.json"

    payload: dict[str, Any] = {
        "meta": {**run_info(args), "ks": ks, "cap_seconds": cap},
        "problems": {},
        "rows": [],
    }
    done: dict[tuple, dict] = {}
    if args.resume and path.exists():
        old = json.loads(path.read_text())
        if old["meta"]["args"].get("quick") == args.quick:
            done = {row_key(r): r for r in old["rows"]}
            log(f"resuming: {len(done)} rows kept from {path}")
    methods = available_methods(args.methods)

    for key in args.problems:
        problem = load_problem(key, args.quick, args.out)
        payload["problems"][key] = problem.summary()
        write_json(path, payload)
        target = problem.target()
        ref = (problem.ref_values, problem.ref_vectors, problem.theta)
        for k in ks:
            if k > len(problem.ref_values):
                log(f"[{key}] k={k} > reference size {len(problem.ref_values)}: skipped")
                continue
            for method in methods:
                ladder = method.ladder(k, problem.dim, args.quick)
                if not ladder:
                    log(f"[{key}] {method.name}: not run for k={k}")
                stop, spent = False, 0.0
                for budget in ladder:
                    for seed in range(args.seeds):
                        label = budget_label(budget)
                        row = done.get((key, k, method.name, label, seed))
                        if row is None:
                            if spent >= cap:
                                stop = True
                                break
                            row = measure(method, target, ref, k, budget, seed, cap - spent)
                            row = {"problem": key, **row}
                        spent += row["seconds"]
                        payload["rows"].append(row)
                        write_json(path, payload)
                        log(f"[{key}] {describe(row)}")
                        if row["status"] != "ok":
                            stop = True
                    if stop:
                        break
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
