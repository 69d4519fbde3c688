"""Seconds per Hessian-vector product for each engine, side by side in one run.

Models (1000 real MNIST samples from the bundled 5k sample):
  - the paper's 7,030-parameter MLP on 16x16 inputs,
  - two ~100k-parameter MLPs on 16x16 inputs: ``mlp100k-deep`` (the paper's family,
    256-130-130-130-130-130-10, tanh) and ``mlp100k-wide`` (256-384-10, tanh). Which engine
    wins depends on the shape: with five narrow hidden layers every engine is near the
    floor of ~2 gradients per HVP, with one wide layer the reused graph costs ~1.3
    gradients while vmapped forward-over-reverse does not profit from it,
  - a ~1M-parameter CNN on 28x28 inputs,
  - ResNet-18 (11,689,512 parameters, batch norm in eval mode) on synthetic 224x224
    images (``--resnet-samples``, default 128, micro-batches of ``--resnet-micro-batch``;
    built by ``curvsketch.experiments.models``, no torchvision needed).
For each: one plain gradient over the samples, every curvsketch engine (with and without
micro-batching) on a block of vectors, and curvlinops' ``HessianLinearOperator`` block
product when curvlinops is importable (install it with ``--no-deps`` beside
``torch==2.13.0``; ``make bench-env`` does).

Usage:
    python -m benchmarks.probes.hvp_engines [--out benchmarks/out] [--quick] [--device cuda]
        [--models mlp7k,mlp100k-deep,mlp100k-wide,cnn1m,resnet18]

Writes ``hvp_engines.json`` and ``hvp_engines.md`` (``hvp_engines_cuda.*`` on a GPU) into
``--out``, rewritten after each model, so a run stopped part-way keeps the models done.
``--quick``: one repeat, 40 samples, blocks of 4 (CNN: 2, not micro-batched), and
ResNet-18 replaced by ``gpu_hvp.bench_model("tiny-cnn")`` on 2 images of 16x16 (named
``resnet18-standin``): a CPU smoke run of every code path.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.harness import machine, markdown_table, write_json
from curvsketch.experiments.data import load_mnist_5k, mnist16
from curvsketch.experiments.models import count_parameters, paper_mlp, resnet18, scaled_mlp
from curvsketch.operators import HessianOperator, engines_for

MODELS = ("mlp7k", "mlp100k-deep", "mlp100k-wide", "cnn1m", "resnet18")


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


def _empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def failed_row(name: str, D: int, method: str, mbs, block: int, err: Exception) -> dict:
    """A row that says a method failed (e.g. out of memory) instead of leaving it out."""
    return {
        "model": name,
        "D": D,
        "method": method,
        "micro_batch": mbs,
        "block": block,
        "seconds_per_vector": None,
        "error": f"{type(err).__name__}: {str(err)[:200]}",
    }


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
                print(f"  {engine} failed: {str(err)[:300]}")
                rows.append(failed_row(name, D, f"curvsketch:{engine}", mbs, block, err))
                del op
                _empty_cache()
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
            try:
                t = timed(lambda op=op, V=V: op @ V, repeats) / block
            except RuntimeError as err:
                print(f"  curvlinops failed: {str(err)[:300]}")
                rows.append(failed_row(name, D, "curvlinops", mbs, block, err))
                del op
                _empty_cache()
                continue
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
    """Per model: best curvsketch engine vs best curvlinops and vs the best gradient
    (failed rows left out; a model with no timed curvsketch engine is listed as such)."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name and r["seconds_per_vector"] is not None]
        ours_all = [r for r in rs if r["method"].startswith("curvsketch")]
        grads = [r for r in rs if r["method"] == "gradient"]
        if not ours_all or not grads:
            out.append({"model": name, "D": None, "best_engine": "none timed"})
            continue
        ours = min(ours_all, key=lambda r: r["seconds_per_vector"])
        grad = min(grads, key=lambda r: r["seconds_per_vector"])
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


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "failed" if x is None else format(x, spec)


def write_outputs(out: Path, suffix: str, meta: dict, rows: list[dict]) -> list[str]:
    """Write ``hvp_engines{suffix}.json`` and ``.md``; return the Markdown lines."""
    summary = summarise(rows)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "rows": rows, "summary": summary}
    write_json(out / f"hvp_engines{suffix}.json", payload, indent=2)
    table = markdown_table(
        ["model", "D", "method", "micro-batch", "block", "s / vector"],
        [
            [
                r["model"],
                f"{r['D']:,}",
                r["method"],
                r["micro_batch"] or "all",
                r["block"],
                _fmt(r["seconds_per_vector"]),
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
                _fmt(s.get("best_seconds_per_hvp")),
                _fmt(s.get("hvp_over_gradient"), ".2f"),
                f"{s['curvlinops_seconds_per_hvp']:.4f}"
                if s.get("curvlinops_seconds_per_hvp")
                else "n/a",
                f"{s['speedup_vs_curvlinops']:.2f}×" if s.get("speedup_vs_curvlinops") else "n/a",
            ]
            for s in summary
        ],
        "llrrrr",
    )
    lines = [
        "# Seconds per HVP, side by side (one run)",
        "",
        f"{meta['platform']}, torch {meta['torch']}, {meta['threads']} threads, "
        f"{meta['samples']} MNIST samples (ResNet-18: {meta['resnet_samples']} synthetic "
        f"{meta['resnet_image_size']}×{meta['resnet_image_size']} images), float32, median "
        f"of {meta['repeats']}; curvlinops: {meta['curvlinops']}.",
        "",
        table,
        "",
        best,
    ]
    (out / f"hvp_engines{suffix}.md").write_text("\n".join(lines) + "\n")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="benchmarks/out")
    parser.add_argument("--quick", action="store_true", help="one repeat, every model reduced")
    parser.add_argument("--samples", type=int, default=None, help="MNIST samples (1000)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--resnet-samples", type=int, default=128)
    parser.add_argument("--resnet-image-size", type=int, default=224)
    parser.add_argument("--resnet-micro-batch", type=int, default=64)
    parser.add_argument("--resnet-block", type=int, default=8)
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    repeats = 1 if args.quick else 3
    samples = args.samples or (40 if args.quick else 1000)
    mbs_small = samples // 4 if args.quick else 250
    cnn_mbs = [None] if args.quick else [None, mbs_small]
    if args.quick:
        args.resnet_samples, args.resnet_image_size = 2, 16
        args.resnet_micro_batch, args.resnet_block = 1, 2
    per_class = samples // 10
    data = mnist16(n_train_per_class=per_class, n_test_per_class=500 - per_class)
    X16, y16 = data.train
    images, labels = load_mnist_5k()
    X28, y28 = images[:samples], labels[:samples]
    dev = torch.device(args.device)
    X16, y16, X28, y28 = (t.to(dev) for t in (X16, y16, X28, y28))
    try:
        import curvlinops

        have_curvlinops = f"curvlinops {getattr(curvlinops, '__version__', '?')}"
    except ImportError:
        have_curvlinops = "skipped: not installed"
    meta = {
        **machine(),
        "samples": samples,
        "repeats": repeats,
        "device": args.device,
        "quick": args.quick,
        "curvlinops": have_curvlinops,
        "resnet_samples": args.resnet_samples,
        "resnet_image_size": args.resnet_image_size,
        "resnet_micro_batch": args.resnet_micro_batch,
    }
    out = Path(args.out)
    suffix = "" if args.device == "cpu" else f"_{dev.type}"
    rows: list[dict] = []
    blk, cnn_blk = (4, 2) if args.quick else (64, 8)
    for name in models:
        if name == "mlp7k":
            rows += bench_model(name, paper_mlp(seed=0).to(dev), X16, y16, blk, repeats, [None])
        elif name == "mlp100k-deep":
            model = scaled_mlp(130, seed=0).to(dev)
            rows += bench_model(name, model, X16, y16, blk, repeats, [None, mbs_small])
        elif name == "mlp100k-wide":
            model = wide_mlp().to(dev)
            rows += bench_model(name, model, X16, y16, blk, repeats, [None, mbs_small])
        elif name == "cnn1m":
            model = cnn_1m().to(dev)
            rows += bench_model(name, model, X28, y28, cnn_blk, repeats, cnn_mbs)
        else:
            if args.quick:
                from benchmarks.probes.gpu_hvp import bench_model as standin

                label, model = "resnet18-standin", standin("tiny-cnn")
            else:
                label, model = name, resnet18(num_classes=1000, seed=0)
            side = args.resnet_image_size
            gen = torch.Generator().manual_seed(0)
            Xr = torch.randn(args.resnet_samples, 3, side, side, generator=gen).to(dev)
            yr = torch.randint(0, 1000, (args.resnet_samples,), generator=gen).to(dev)
            rows += bench_model(
                label, model.to(dev), Xr, yr, args.resnet_block, repeats, [args.resnet_micro_batch]
            )
            del Xr, yr
        lines = write_outputs(out, suffix, meta, rows)
        _empty_cache()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
