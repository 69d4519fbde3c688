"""A krylov solve of a few hundred ResNet-18 Hessian eigenpairs on one GPU.

``curvsketch.seigh(op, k, m, recovery="krylov")`` (randomized block Krylov with full
reorthogonalisation and Rayleigh–Ritz; Musco & Musco, NeurIPS 2015, Alg. 2; Tropp &
Webber, arXiv:2306.12418, §11) on the Hessian of ResNet-18 (11,689,512 parameters) over a
small set of synthetic 224×224 images: per-stage seconds (``measure``: the products;
``qr``: building the orthonormal basis; ``core``/``eigh``/``eigvec``: Rayleigh–Ritz and the
Ritz vectors), the residual norms it returns for free, and the memory peak. These are the
numbers the paper-size projection of a k = 1,500 krylov solve is scaled from
(``benchmarks/probes/gpu_report.py``).

    python -m benchmarks.probes.gpu_krylov --json out.json            # k=256, m=512, CUDA
    python -m benchmarks.probes.gpu_krylov --json out.json --device cpu --quick

The JSON is written before the solve (settings) and after it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.harness import write_json
from benchmarks.probes.gpu_hvp import bench_model
from curvsketch.operators import HessianOperator
from curvsketch.sketch import seigh


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument(
        "--quick", action="store_true", help="tiny-cnn stand-in, k=4, m=8, 2 images of 16x16"
    )
    p.add_argument("--model", default="resnet18", help="resnet18 or tiny-cnn")
    p.add_argument("--k", type=int, default=256, help="eigenpairs")
    p.add_argument("--m", type=int, default=512, help="Krylov basis size (products)")
    p.add_argument("--block-size", type=int, default=None, help="Krylov block (default: seigh's)")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--micro-batch", type=int, default=32)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--engine", default="auto")
    args = p.parse_args(argv)
    if args.quick:
        args.k, args.m, args.samples, args.micro_batch, args.image_size = 4, 8, 2, 2, 16
        args.model = "tiny-cnn"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_krylov: CUDA is not available; pass --device cpu", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "benchmark": "gpu_krylov",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "quick": args.quick,
        "model": args.model,
        "k": args.k,
        "m": args.m,
        "samples": args.samples,
        "micro_batch": args.micro_batch,
        "image_size": args.image_size,
        "status": "started",
    }

    def save() -> None:
        write_json(args.json, report, indent=2)

    save()
    model = bench_model(args.model).to(device).eval()
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(args.samples, 3, args.image_size, args.image_size, generator=g, device=device)
    y = torch.randint(0, 1000, (args.samples,), generator=g, device=device)
    op = HessianOperator(
        model,
        nn.CrossEntropyLoss(),
        (x, y),
        micro_batch_size=args.micro_batch,
        engine=args.engine,
        check_determinism=False,
    )
    report["D"] = op.shape[0]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    res = seigh(op, args.k, args.m, recovery="krylov", block_size=args.block_size, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - t0
    assert res is not None
    res_norms = res.residual_norms
    top = res.eigenvalues[: min(10, args.k)].abs().clamp_min(1e-30)
    rel = (res_norms[: top.numel()] / top).double().cpu() if res_norms is not None else None
    report.update(
        status="ok",
        wall_seconds=wall,
        engine=op.engine,
        num_products=res.num_products,
        block=args.block_size or min(64, -(-args.m // 8)),  # seigh's default otherwise
        seconds={k: float(v) for k, v in res.timings.items()},
        seconds_per_product=float(res.timings.get("measure", 0.0)) / res.num_products,
        top_eigenvalues=res.eigenvalues[:5].double().cpu().tolist(),
        top10_max_relative_residual=float(rel.max()) if rel is not None else None,
        peak_cuda_bytes=int(torch.cuda.max_memory_allocated(device))
        if device.type == "cuda"
        else 0,
    )
    save()
    print(
        f"krylov k={args.k} m={res.num_products} on {args.model} over {args.samples} images "
        f"({op.engine}): {wall:.1f} s; "
        + ", ".join(f"{k} {v:.2f} s" for k, v in report["seconds"].items())
        + f"; top-10 max ‖r‖/|λ| {report['top10_max_relative_residual']:.2e}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
