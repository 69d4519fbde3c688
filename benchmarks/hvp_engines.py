"""Seconds per Hessian-vector product for each engine, side by side in one run.

Models (1000 real MNIST samples from the bundled 5k sample):
  - the paper's 7,030-parameter MLP on 16x16 inputs,
  - two ~100k-parameter MLPs on 16x16 inputs: ``mlp100k-deep`` (the paper's family,
    256-130-130-130-130-130-10, tanh) and ``mlp100k-wide`` (256-384-10, tanh). Which engine
    wins depends on the shape: with five narrow hidden layers every engine is near the
    floor of ~2 gradients per HVP, with one wide layer the reused graph costs ~1.3
    gradients while vmapped forward-over-reverse does not profit from it,
  - a ~1M-parameter CNN on 28x28 inputs.
For each: one plain gradient over the samples, every curvsketch engine (with and without
micro-batching) on a block of vectors, and curvlinops' ``HessianLinearOperator`` block
product when curvlinops is importable (install it with ``--no-deps`` beside
``torch==2.13.0``; ``make bench-env`` does).

Usage:
    python benchmarks/hvp_engines.py [--out benchmarks/out] [--quick]

Writes ``hvp_engines.json`` and ``hvp_engines.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from curvsketch.experiments.data import load_mnist_5k, mnist16
from curvsketch.experiments.models import count_parameters, paper_mlp, scaled_mlp
from curvsketch.operators import HessianOperator, engines_for
from report import machine, markdown_table


def cnn_1m() -> nn.Module:
    """A ~1M-parameter CNN for 1x28x28 inputs (two conv blocks and two dense layers)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 300),
        nn.ReLU(),
        nn.Linear(300, 10),
    )


def wide_mlp() -> nn.Module:
    """A ~100k-parameter MLP with one wide hidden layer: 256-384-10, tanh (102,538 params)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 384), nn.Tanh(), nn.Linear(384, 10))


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gradient_seconds(model: nn.Module, X: torch.Tensor, y: torch.Tensor, mbs: int | None) -> float:
    """Seconds for one full gradient of the mean loss over (X, y)."""
    loss_fn = nn.functional.cross_entropy
    params = [p for p in model.parameters() if p.requires_grad]

    def run() -> None:
        step = mbs or X.shape[0]
        for i in range(0, X.shape[0], step):
            loss = loss_fn(model(X[i : i + step]), y[i : i + step]) * (
                min(step, X.shape[0] - i) / X.shape[0]
            )
            torch.autograd.grad(loss, params)

    return run


def curvlinops_product(model: nn.Module, X: torch.Tensor, y: torch.Tensor, mbs: int | None):
    """curvlinops 3.x HessianLinearOperator block product, or None if not installed."""
    try:
        from curvlinops import HessianLinearOperator
    except ImportError:
        return None
    step = mbs or X.shape[0]
    data = list(zip(X.split(step), y.split(step), strict=True))
    params = [p for p in model.parameters() if p.requires_grad]
    return HessianLinearOperator(
        model, nn.CrossEntropyLoss(), params, data, check_deterministic=False
    )


def bench_model(
    name: str,
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    block: int,
    repeats: int,
    mbs_list,
):
    model.eval()
    D = count_parameters(model)
    rows = []
    for mbs in mbs_list:
        g = timed(gradient_seconds(model, X, y, mbs), repeats)
        rows.append(
            {
                "model": name,
                "D": D,
                "method": "gradient",
                "micro_batch": mbs,
                "block": 1,
                "seconds_per_vector": g,
            }
        )
        print(f"{name:12s} D={D:>9,d} mbs={mbs!s:>5s} gradient            {g:8.4f} s", flush=True)
        V = torch.randn(D, block, generator=torch.Generator().manual_seed(0)).to(X.device)
        for engine in engines_for("hessian"):
            op = HessianOperator(
                model,
                nn.functional.cross_entropy,
                (X, y),
                engine=engine,
                micro_batch_size=mbs,
                check_determinism=False,
            )
            try:
                t = timed(lambda op=op, V=V: op @ V, repeats) / block
            except RuntimeError as err:  # e.g. out of memory for vmap on big blocks
                print(f"  {engine} failed: {err}")
                continue
            rows.append(
                {
                    "model": name,
                    "D": D,
                    "method": f"curvsketch:{engine}",
                    "micro_batch": mbs,
                    "block": block,
                    "seconds_per_vector": t,
                }
            )
            print(
                f"{name:12s} D={D:>9,d} mbs={mbs!s:>5s} curvsketch:{engine:14s}{t:8.4f} s/HVP",
                flush=True,
            )
        op = curvlinops_product(model, X, y, mbs)
        if op is not None:
            t = timed(lambda op=op, V=V: op @ V, repeats) / block
            rows.append(
                {
                    "model": name,
                    "D": D,
                    "method": "curvlinops",
                    "micro_batch": mbs,
                    "block": block,
                    "seconds_per_vector": t,
                }
            )
            print(
                f"{name:12s} D={D:>9,d} mbs={mbs!s:>5s} curvlinops               {t:8.4f} s/HVP",
                flush=True,
            )
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per model: best curvsketch engine vs best curvlinops and vs the best gradient."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name]
        ours = min(
            (r for r in rs if r["method"].startswith("curvsketch")),
            key=lambda r: r["seconds_per_vector"],
        )
        grad = min(
            (r for r in rs if r["method"] == "gradient"), key=lambda r: r["seconds_per_vector"]
        )
        theirs = [r for r in rs if r["method"] == "curvlinops"]
        best_theirs = min(theirs, key=lambda r: r["seconds_per_vector"]) if theirs else None
        out.append(
            {
                "model": name,
                "D": rs[0]["D"],
                "best_engine": f"{ours['method']} (micro_batch={ours['micro_batch']})",
                "best_seconds_per_hvp": ours["seconds_per_vector"],
                "hvp_over_gradient": ours["seconds_per_vector"] / grad["seconds_per_vector"],
                "curvlinops_seconds_per_hvp": best_theirs["seconds_per_vector"]
                if best_theirs
                else None,
                "speedup_vs_curvlinops": best_theirs["seconds_per_vector"]
                / ours["seconds_per_vector"]
                if best_theirs
                else None,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="benchmarks/out")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, MLPs only")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    repeats = 1 if args.quick else 3
    per_class = args.samples // 10
    data = mnist16(n_train_per_class=per_class, n_test_per_class=500 - per_class)
    X16, y16 = data.train
    images, labels = load_mnist_5k()
    X28, y28 = images[: args.samples], labels[: args.samples]
    dev = torch.device(args.device)
    X16, y16, X28, y28 = (t.to(dev) for t in (X16, y16, X28, y28))
    rows = []
    rows += bench_model("mlp7k", paper_mlp(seed=0).to(dev), X16, y16, 64, repeats, [None])
    rows += bench_model(
        "mlp100k-deep", scaled_mlp(130, seed=0).to(dev), X16, y16, 64, repeats, [None, 250]
    )
    rows += bench_model("mlp100k-wide", wide_mlp().to(dev), X16, y16, 64, repeats, [None, 250])
    if not args.quick:
        rows += bench_model("cnn1m", cnn_1m().to(dev), X28, y28, 8, repeats, [None, 250])
    summary = summarise(rows)
    meta = {**machine(), "samples": args.samples, "repeats": repeats, "device": args.device}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "rows": rows, "summary": summary}
    suffix = "" if args.device == "cpu" else f"_{dev.type}"
    (out / f"hvp_engines{suffix}.json").write_text(json.dumps(payload, indent=2))
    table = markdown_table(
        ["model", "D", "method", "micro-batch", "block", "s / vector"],
        [
            [
                r["model"],
                f"{r['D']:,}",
                r["method"],
                r["micro_batch"] or "all",
                r["block"],
                f"{r['seconds_per_vector']:.4f}",
            ]
            for r in rows
        ],
        "lrlrrr",
    )
    best = markdown_table(
        [
            "model",
            "best engine",
            "s / HVP",
            "HVP ÷ gradient",
            "curvlinops s / HVP",
            "speed-up vs curvlinops",
        ],
        [
            [
                s["model"],
                s["best_engine"],
                f"{s['best_seconds_per_hvp']:.4f}",
                f"{s['hvp_over_gradient']:.2f}",
                f"{s['curvlinops_seconds_per_hvp']:.4f}"
                if s["curvlinops_seconds_per_hvp"]
                else "n/a",
                f"{s['speedup_vs_curvlinops']:.2f}×" if s["speedup_vs_curvlinops"] else "n/a",
            ]
            for s in summary
        ],
        "llrrrr",
    )
    lines = [
        "# Seconds per HVP, side by side (one run)",
        "",
        f"{meta['platform']}, torch {meta['torch']}, {meta['threads']} threads, "
        f"{args.samples} MNIST samples, float32, median of {repeats}.",
        "",
        table,
        "",
        best,
    ]
    (out / f"hvp_engines{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
