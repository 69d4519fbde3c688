"""The trace verdict of ``estimators.py`` on problem (a) with many more seeds.

At equal products curvsketch's XTrace and curvlinops' XTrace are the same algorithm with
different random test vectors, so the medians of their errors over 200 seeds differ by
sampling noise of ~10 %. This script takes, at each ``N``, the best curvsketch method and
the best peer of the ``estimators.py`` run (by median over its seeds), measures both again
over ``--seeds`` seeds (default 1000) on the same dense float64 Hessian, and stores the
comparison in ``<name>_verdict.json`` and under ``trace_verdict`` in the run's JSON
(merged by whichever of the two scripts finishes last, so they may run side by side);
the report then decides from these errors (median and a 95 % bootstrap interval of the
gap).

Usage (from the repository root, once ``estimators.py`` has written its trace table):
    .venv-bench/bin/python -m benchmarks.probes.estimators_verdict --seeds 1000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import OUT_DIR, RESULTS_DIR, log, set_threads, write_json
from benchmarks.probes.estimators import plot, quartiles, trace_methods, write_markdown
from benchmarks.suite.problems import spec_for


def _large_operator(out: Path):
    """Problem (b)'s operator as ``estimators_large.run_large`` builds it (float32)."""
    from benchmarks.suite.problems import _hessian_data, _trained_model
    from curvsketch import HessianOperator

    spec = spec_for("b", False)
    model = _trained_model(spec, out / "problems").float()
    for p in model.parameters():
        p.grad = None
    _, X, y = _hessian_data(spec)
    return HessianOperator(model, torch.nn.functional.cross_entropy, (X.float(), y), engine="vmap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument(
        "--products",
        type=int,
        nargs="+",
        default=None,
        help="only these N (rows of other N already in <name>_verdict.json are kept)",
    )
    parser.add_argument(
        "--new-reference",
        action="store_true",
        help="problem b: compute the reference trace of the model as trained here (krylov + "
        "deflated Hutchinson, as estimators_large) instead of the run's stored one",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="measure these methods (names of estimators.trace_methods) instead of the best "
        "curvsketch method and the best peer of the run's table",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="estimators")
    parser.add_argument(
        "--problem",
        choices=["a", "b"],
        default="a",
        help="a: the 7k MLP on its dense Hessian; b: the ~100k MLP on its real float32 "
        "operator against the run's reference trace",
    )
    args = parser.parse_args()
    set_threads(args.threads)
    path = args.results / f"{args.name}.json"
    payload = json.loads(path.read_text())
    methods = trace_methods(None, None, None)
    if args.problem == "a":
        spec = spec_for("a", False)
        h_path = args.out / "problems" / f"{spec.cache_key()}_dense_hessian.pt"
        if not h_path.exists():  # a fresh checkout: train and form the Hessian as the run did
            from benchmarks.probes.estimators import clear_grads, reference
            from benchmarks.suite.problems import _hessian_data, _trained_model

            model = _trained_model(spec, args.out / "problems").double()
            clear_grads(model)
            _, X, y = _hessian_data(spec)
            reference(spec, model, X.double(), y, args.out / "problems")
        H = torch.load(h_path, weights_only=True)
        exact = float(H.diagonal().sum())
        if abs(exact - payload["problem"]["exact_trace"]) > 1e-9 * abs(exact):
            # trained again here (other threads, other machine: other rounding): the
            # comparison stays fair (every method on this matrix, against its exact trace)
            log(
                f"{h_path} is not the Hessian of {path}: exact trace {exact:.10g} against "
                f"{payload['problem']['exact_trace']:.10g}; measuring on this one"
            )
        table = payload["trace"]
        suffix = ""
    else:
        H = _large_operator(args.out)
        stored = payload["large"]["reference"]
        exact = float(stored["trace"])
        if args.new_reference:  # the model trained again here: its own reference
            from benchmarks.probes.estimators_large import _reference

            spec = spec_for("b", False)
            ref = _reference(
                H,
                args.out / "problems",
                spec.cache_key(),
                int(stored["deflated"]),
                int(stored["hutchinson_products"]),
            )
            log(
                f"[b] reference of this model {ref['trace']:.6g} ± {ref['standard_error']:.2g} "
                f"(the run's: {exact:.6g})"
            )
            exact = float(ref["trace"])
        table = payload["large"]["trace"]
        suffix = "_large"
    tr = {k: v for k, v in table.items() if isinstance(v, list)}
    ns = [r["products"] for r in tr["curvsketch xtrace"]]
    verdict_path = args.results / f"{args.name}_verdict{suffix}.json"
    verdict: dict = {"rows": []}
    if verdict_path.exists():
        verdict = json.loads(verdict_path.read_text())
        if abs(verdict.get("exact_trace", exact) - exact) > 1e-9 * abs(exact):
            verdict = {"rows": []}  # another problem's verdict: start again
    t0 = time.perf_counter()
    for i, n in enumerate(ns):
        if args.products is not None and n not in args.products:
            continue
        ours = {k: v[i] for k, v in tr.items() if k.startswith("curvsketch")}
        peers = {k: v[i] for k, v in tr.items() if not k.startswith("curvsketch")}
        picks = args.methods or [
            min(ours, key=lambda k: ours[k]["rel_error"]["median"]),
            min(peers, key=lambda k: peers[k]["rel_error"]["median"]),
        ]
        previous = next((r for r in verdict["rows"] if r["products"] == n), None)
        row = {"products": n}
        if previous is not None and previous.get("seeds") == args.seeds:
            # methods measured before at these seeds stay (another --methods call adds some)
            row.update({k: v for k, v in previous.items() if k not in ("products", "seeds")})
        for name in picks:
            if name not in methods:
                raise SystemExit(f"{name} is not re-run here (only curvsketch and curvlinops)")
            fn = methods[name]
            errs = [abs(fn(H, n, s) - exact) / abs(exact) for s in range(args.seeds)]
            row[name] = {"rel_error": quartiles(errs), "errors": errs}
            log(f"verdict N={n} {name}: median {np.median(errs):.4e} ({args.seeds} seeds)")
        row["seeds"] = args.seeds
        verdict["rows"] = sorted(
            [r for r in verdict["rows"] if r["products"] != n] + [row],
            key=lambda r: r["products"],
        )
        verdict["exact_trace"] = exact
        write_json(verdict_path, verdict)  # after every N: nothing measured is lost
    log(f"verdict rows measured in {time.perf_counter() - t0:.0f} s")
    # estimators.py may still be running (it reads this file before it writes its report);
    # if it has finished, merge now and rewrite the report.
    payload = json.loads(path.read_text())
    if "total_seconds" in payload:
        payload[f"trace_verdict{suffix}"] = verdict
        write_json(path, payload)
        write_markdown(payload, args.results / f"{args.name}.md")
        plot(payload, args.results / f"{args.name}.png")
        log(f"merged into {path} (+ .md, .png)")
    else:
        log(f"wrote {args.name}_verdict.json; estimators.py merges it when it finishes")


if __name__ == "__main__":
    main()
