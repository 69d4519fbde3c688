"""Scale check on one GPU: ResNet-18 Hessian (11,689,512 parameters), per-HVP time and a
complete reduced single-pass SEIGH into an on-disk store, with per-stage timings and the
projected time of the paper's ImageNet setting (o = 1500, s = 3000, 5000 samples).

    python -m benchmarks.probes.gpu_scale                       # CUDA, o=200, s=400, 64 samples
    python -m benchmarks.probes.gpu_scale --device cpu --quick  # tiny CPU smoke run

Products run on the device; each block is copied to pinned host memory with
``non_blocking=True`` and committed to the Zarr store by a writer thread
(:mod:`curvsketch.sketch.stored`), so the GPU does not wait for the disk. Writes JSON to
``$OUT`` if set, else ``benchmarks/out/``.

Reduced mode (``benchmarks/probes/gpu_check.sh`` uses it): ``--hvp-samples 1000,5000`` times one
block product of ResNet-18 over each number of synthetic 224×224 images (micro-batched;
the engine chosen by ``"auto"`` on the first micro-batch, the warm-up on one
micro-batch) and ``--store-run`` adds the complete reduced single-pass run above at
``--outer``/``--inner``. ``--json PATH`` is rewritten after every measurement.

    python -m benchmarks.probes.gpu_scale --hvp-samples 1000,5000 --store-run --outer 16 \
        --inner 32 --json out.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.harness import OUT_DIR, peak_rss_bytes, write_json
from benchmarks.probes.gpu_hvp import bench_model, reduced
from curvsketch.operators import HessianOperator
from curvsketch.sketch.stored import measure, recover


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_scale(
    *,
    model_name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    samples: int,
    micro_batch: int,
    outer: int,
    inner: int,
    block_size: int,
    device: torch.device,
    store_dir: Path,
    memory_budget: int | None = None,
    hvp_repeats: int = 1,
    engine: str = "auto",
) -> dict[str, Any]:
    """Build the operator, time HVPs, measure into a store and recover; return timings."""
    t_total = time.perf_counter()
    t0 = time.perf_counter()
    torch.backends.cudnn.deterministic = True
    model = bench_model(model_name, num_classes).to(device).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(samples, *input_shape, generator=g)
    y = torch.randint(0, num_classes, (samples,), generator=g)
    op = HessianOperator(
        model,
        nn.CrossEntropyLoss(),
        (x.to(device), y.to(device)),
        micro_batch_size=micro_batch,
        check_determinism=False,
        engine=engine,
    )
    dim = op.shape[0]
    if store_dir.exists():
        shutil.rmtree(store_dir)
    sync(device)
    layout = time.perf_counter() - t0

    v = torch.randn(dim, block_size, device=device, dtype=op.dtype)
    op @ v  # warm-up on a whole block (engine choice on the real block size, cuDNN autotune)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(hvp_repeats):
        op @ v
    sync(device)
    per_hvp = (time.perf_counter() - t0) / (hvp_repeats * block_size)
    del v

    timings: dict[str, float] = {}
    measure(
        op, outer, inner, store=store_dir, block_size=block_size, timings=timings, progress=True
    )
    rec_device = device if memory_budget is None else torch.device("cpu")
    result = recover(store_dir, memory_budget=memory_budget, device=rec_device, timings=timings)
    sync(device)
    wall = time.perf_counter() - t_total
    stages = {
        "layout": layout,
        "measure": timings["measure"],
        "qr": timings["qr"],
        "core": timings["core"] + timings["eigh"],
        "eigvec": timings["eigvec"],
    }
    stages["total"] = sum(stages.values())  # without the HVP timing above
    stages["wall_with_hvp_timing"] = wall
    return {
        "model": model_name,
        "num_params": dim,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "samples": samples,
        "micro_batch": micro_batch,
        "outer": outer,
        "inner": inner,
        "block_size": block_size,
        "engine": op.engine,
        "seconds_per_hvp": per_hvp,
        "products_per_second": inner / max(timings["measure"], 1e-12),
        "stages_seconds": stages,
        "top_eigenvalues": result.eigenvalues[:5].tolist(),
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_cuda_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0,
    }


def project(report: dict[str, Any], outer: int, inner: int, samples: int) -> dict[str, float]:
    """Scale stage times to another setting: products ∝ s·N (samples), QR and eigenvectors
    ∝ D·o², core (ΦQ, ΨQ) ∝ D·o (times s/s₀ for the small solve)."""
    st, o0, s0 = report["stages_seconds"], report["outer"], report["inner"]
    # measure from the per-HVP time (the store's own product blocks agree within overheads)
    measure_s = report["seconds_per_hvp"] * inner * samples / report["samples"]
    qr = st["qr"] * (outer / o0) ** 2
    core = st["core"] * (outer / o0) * (inner / s0)
    eigvec = st["eigvec"] * (outer / o0) ** 2
    return {
        "outer": outer,
        "inner": inner,
        "samples": samples,
        "measure": measure_s,
        "qr": qr,
        "core": core,
        "eigvec": eigvec,
        "total": measure_s + qr + core + eigvec + st["layout"],
    }


def write_report(report: dict[str, Any], name: str) -> Path:
    path = Path(os.environ.get("OUT") or OUT_DIR) / f"{name}.json"
    write_json(path, report, indent=2)
    return path


def print_report(report: dict[str, Any]) -> None:
    st = report["stages_seconds"]
    print(
        f"\n{report['model']} D={report['num_params']:,} on {report['device_name']}: "
        f"{report['seconds_per_hvp'] * 1e3:.1f} ms per HVP over {report['samples']} samples, "
        f"{report['products_per_second']:.2f} products/s in the sketch"
    )
    print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()))
    if "projected" in report:
        p = report["projected"]
        print(
            f"projected o={p['outer']}, s={p['inner']}, {p['samples']} samples: "
            + ", ".join(
                f"{k} {p[k] / 60:.1f} min" for k in ("measure", "qr", "core", "eigvec", "total")
            )
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny CPU-sized run (smoke test)")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--micro-batch", type=int, default=32)
    p.add_argument("--outer", type=int, default=200)
    p.add_argument("--inner", type=int, default=400)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--store", help="store directory (default: a temporary folder, removed)")
    p.add_argument("--memory-budget", type=int, help="bytes; recover out of core above it")
    p.add_argument("--engine", default="auto", help="HVP engine (default: auto)")
    p.add_argument("--model", default="resnet18", help="reduced mode: resnet18 or tiny-cnn")
    p.add_argument("--hvp-samples", help="reduced mode: comma-separated image counts to time")
    p.add_argument("--store-run", action="store_true", help="reduced mode: also the store run")
    p.add_argument("--image-size", type=int, default=224, help="reduced mode: image side")
    p.add_argument("--json", help="reduced mode: output file, rewritten after each step")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available; use --device cpu --quick", file=sys.stderr)
        return 2
    if args.hvp_samples:
        if not args.json:
            p.error("--hvp-samples needs --json PATH")
        return reduced(args, device, run_scale)
    shape, size = (3, 224, 224), dict(samples=args.samples, micro_batch=args.micro_batch)
    sketch = dict(outer=args.outer, inner=args.inner, block_size=args.block_size)
    if args.quick:
        shape, size = (3, 32, 32), dict(samples=2, micro_batch=2)
        sketch = dict(outer=2, inner=4, block_size=2)
    tmp = None if args.store else tempfile.mkdtemp(prefix="gpu_scale-")
    store = Path(args.store or tmp) / "store"
    try:
        report = run_scale(
            model_name="resnet18",
            input_shape=shape,
            num_classes=1000,
            device=device,
            store_dir=store,
            memory_budget=args.memory_budget,
            **size,
            **sketch,
        )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    assert report["num_params"] == 11_689_512, report["num_params"]
    report["projected"] = project(report, 1500, 3000, 5000)
    report["quick"] = args.quick
    path = write_report(report, "gpu_scale_quick" if args.quick else "gpu_scale")
    print_report(report)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
