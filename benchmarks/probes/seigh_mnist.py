"""Sketched eigendecompositions on the paper's setting, side by side with skerch 1.2.

Setting (docs/paper.md §4): the 7,030-parameter MLP trained 1000 SGD steps (lr 0.3,
batch 500) on 16x16 MNIST from the bundled sample; H = exact loss Hessian on 500
class-balanced held-out digits, float64. Reference: dense H and its full eigh.

For each method and seed: products, seconds, top-10 and top-50 eigenvalue max relative
error (each exact eigenvalue matched to the nearest sketched one, so a sign error counts
and a ±λ pair ordered differently does not), and |overlap_sketched − overlap_exact| for the
top-350 magnitude mask. Methods at 710 products unless named otherwise:
  curvsketch singlepass (o=355, s=710), tropp (o=355, s=355), hmt (o=355),
  hmt + 1 power iteration (o=355, 1065 products); skerch hmt (o=355) and oversampled
  (o=355, inner 710: 1065 products) when skerch is importable (``make bench-env``).

Usage: python -m benchmarks.probes.seigh_mnist [--seeds 5] [--out benchmarks/out] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.harness import CountingOperator, machine, markdown_table
from benchmarks.suite.methods import mask_overlap_rows
from curvsketch import HessianOperator, dense_matrix, seigh
from curvsketch.experiments.data import balanced_subset, mnist16
from curvsketch.experiments.measure_step import eigenvalue_error, exact_top_eigenpairs
from curvsketch.experiments.models import paper_mlp
from curvsketch.experiments.training import train

K_MASK = 350


def setting(steps: int) -> tuple[HessianOperator, torch.Tensor]:
    """The trained paper MLP's Hessian operator on 500 held-out digits, and θ."""
    data = mnist16()
    model = paper_mlp(seed=0)
    train(model, data.train, steps=steps, lr=0.3, batch_size=500, seed=0, progress=False)
    model = model.double().eval()
    idx = balanced_subset(data.test.targets, 50, seed=0)
    X, y = data.test.inputs[idx].double(), data.test.targets[idx]
    op = HessianOperator(model, torch.nn.functional.cross_entropy, (X, y))
    return op, op.parameter_vector()


def ours(recovery: str, outer: int, inner: int | None, power_iters: int = 0):
    def run(op, seed):
        r = seigh(
            op, outer, inner, recovery=recovery, seed=seed, power_iters=power_iters, progress=False
        )
        return r.eigenvalues, r.eigenvectors

    return run


def skerch_method(recovery: str, outer: int):
    import skerch.algorithms as sk

    def run(op, seed):
        ews, evs = sk.seigh(
            op,
            op.device,
            op.dtype,
            outer,
            seed=1000 + seed,
            noise_type="ssrft",
            recovery_type=recovery,
            meas_blocksize=64,
        )
        return torch.as_tensor(ews), torch.as_tensor(evs)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000, help="SGD steps before the Hessian")
    parser.add_argument("--out", default="benchmarks/out")
    parser.add_argument(
        "--only", action="append", default=[], help="run only this method (exact name; repeat)"
    )
    args = parser.parse_args()

    op, theta = setting(args.steps)
    t0 = time.perf_counter()
    H = dense_matrix(op, block_size=512)
    lam, U = exact_top_eigenpairs((H + H.T) / 2, 400)
    t_exact = time.perf_counter() - t0
    del H
    exact_overlap = mask_overlap_rows(U, theta, K_MASK)
    print(
        f"exact reference: {t_exact:.1f} s; overlap(k={K_MASK}) = {exact_overlap:.4f}", flush=True
    )

    methods = {
        "curvsketch singlepass o=355 s=710": ours("singlepass", 355, 710),
        "curvsketch tropp o=355 s=355": ours("tropp", 355, 355),
        "curvsketch hmt o=355": ours("hmt", 355, None),
        "curvsketch hmt o=355 power_iters=1": ours("hmt", 355, None, 1),
    }
    try:
        methods["skerch 1.2 hmt o=355"] = skerch_method("hmt", 355)
        # skerch requires inner > outer for its oversampled recovery: s = 2o as in the paper
        methods["skerch 1.2 oversampled o=355 inner=710"] = skerch_method("oversampled_710", 355)
        methods["skerch 1.2 singlepass o=710"] = skerch_method("singlepass", 710)
    except ImportError:
        print("skerch not importable: its rows are left out (make bench-env installs it)")

    if args.only:
        unknown = sorted(set(args.only) - set(methods))
        if unknown:
            parser.error(f"--only: unknown method(s) {unknown}; known: {sorted(methods)}")
        methods = {k: v for k, v in methods.items() if k in args.only}

    rows = []
    for name, run in methods.items():
        for seed in range(args.seeds):
            counter = CountingOperator(op)
            t = time.perf_counter()
            try:
                ev, vecs = run(counter, seed)
            except (ValueError, RuntimeError) as err:  # keep what was measured so far
                print(f"{name}: failed: {err}", flush=True)
                break
            sec = time.perf_counter() - t
            rows.append(
                {
                    "method": name,
                    "seed": seed,
                    "products": counter.count,
                    "seconds": sec,
                    "top10_err": eigenvalue_error(lam[:10], ev),
                    "top50_err": eigenvalue_error(lam[:50], ev),
                    "overlap_diff": abs(mask_overlap_rows(vecs, theta, K_MASK) - exact_overlap),
                }
            )
            r = rows[-1]
            print(
                f"{name:42s} seed {seed}: {r['products']} products {sec:6.2f} s  "
                f"top10 {r['top10_err']:.2e}  top50 {r['top50_err']:.2e}  "
                f"|Δoverlap| {r['overlap_diff']:.4f}",
                flush=True,
            )

    med = []
    for name in methods:
        rs = [r for r in rows if r["method"] == name]
        if not rs:
            continue
        med.append(
            {
                "method": name,
                **{
                    k: statistics.median(r[k] for r in rs)
                    for k in ("products", "seconds", "top10_err", "top50_err", "overlap_diff")
                },
            }
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        **machine(),
        "seeds": args.seeds,
        "steps": args.steps,
        "exact_seconds": t_exact,
        "exact_overlap_k350": exact_overlap,
        "top10_exact": lam[:10].tolist(),
    }
    (out / "seigh_mnist.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "median": med}, indent=1)
    )
    table = markdown_table(
        [
            "method",
            "products",
            "seconds",
            "top-10 max rel. err",
            "top-50 max rel. err",
            "|Δ overlap k=350|",
        ],
        [
            [
                m["method"],
                int(m["products"]),
                f"{m['seconds']:.2f}",
                f"{m['top10_err']:.2e}",
                f"{m['top50_err']:.2e}",
                f"{m['overlap_diff']:.4f}",
            ]
            for m in med
        ],
        "lrrrrr",
    )
    text = (
        f"# SEIGH on the paper's MNIST setting (median over {args.seeds} seeds, one run)\n\n"
        f"{meta['platform']}, torch {meta['torch']}, {meta['threads']} threads. Paper MLP "
        f"(D = 7,030) after {args.steps} SGD steps, H on 500 held-out digits, float64; "
        f"exact overlap of the top-{K_MASK} magnitude mask: {exact_overlap:.4f}.\n\n{table}\n"
    )
    (out / "seigh_mnist.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
