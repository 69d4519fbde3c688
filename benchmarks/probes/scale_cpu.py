"""CPU scale run: the 3c3d net (deepobs_3c3d, 895,210 parameters) on synthetic CIFAR-sized
data, single-pass SEIGH into an on-disk store, per-stage seconds beside the paper's CIFAR-10
breakdown (docs/paper.md: products 24, QR 1.5, core 2, total 97 minutes, on GPUs).

    python -m benchmarks.probes.scale_cpu            # 500 samples, o=1000, s=2000 (an hour)
    python -m benchmarks.probes.scale_cpu --quick    # 20 samples, o=40, s=80 (a minute or two)

Writes JSON to ``$OUT`` if set, else ``benchmarks/out/``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from benchmarks.probes.gpu_scale import run_scale, write_report

PAPER_MINUTES = {"products": 24.0, "qr": 1.5, "core": 2.0, "total": 97.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="reduced size")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--outer", type=int, default=1000)
    p.add_argument("--inner", type=int, default=2000)
    p.add_argument("--block-size", type=int, default=50)
    p.add_argument("--micro-batch", type=int, default=250)
    p.add_argument("--store", help="store directory (default: a temporary folder, removed)")
    p.add_argument("--memory-budget", type=int, help="bytes; recover out of core above it")
    p.add_argument(
        "--engine",
        default="graph",
        help="HVP engine (default graph: on this CPU it was the fastest for a CNN on "
        "micro-batches of 250 and, unlike vmap, needs no per-vector copy of the activations)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.outer, args.inner, args.block_size = 20, 40, 80, 20
        args.micro_batch = 20
    tmp = None if args.store else tempfile.mkdtemp(prefix="scale_cpu-")
    try:
        report = run_scale(
            model_name="deepobs_3c3d",
            input_shape=(3, 32, 32),
            num_classes=10,
            samples=args.samples,
            micro_batch=args.micro_batch,
            outer=args.outer,
            inner=args.inner,
            block_size=args.block_size,
            device=torch.device("cpu"),
            store_dir=Path(args.store or tmp) / "store",
            memory_budget=args.memory_budget,
            engine=args.engine,
        )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    st = report["stages_seconds"]
    report["paper_minutes_cifar10_gpu"] = PAPER_MINUTES
    report["quick"] = args.quick
    path = write_report(report, "scale_cpu_quick" if args.quick else "scale_cpu")
    print(
        f"\ndeepobs_3c3d D={report['num_params']:,}, {args.samples} samples, "
        f"o={args.outer}, s={args.inner}, CPU ({torch.get_num_threads()} threads)"
    )
    print(f"{'stage':<9}{'this run (s)':>14}{'paper (min, GPU)':>18}")
    rows = [
        ("layout", st["layout"], None),
        ("products", st["measure"], "products"),
        ("QR", st["qr"], "qr"),
        ("core", st["core"] + st["eigvec"], "core"),
        ("total", st["total"], "total"),
    ]
    for name, sec, key in rows:
        paper = f"{PAPER_MINUTES[key]:.1f}" if key else "—"
        print(f"{name:<9}{sec:>14.1f}{paper:>18}")
    print(
        f"products/s {report['products_per_second']:.2f}, "
        f"{report['seconds_per_hvp'] * 1e3:.1f} ms per HVP, "
        f"peak RSS {report['peak_rss_bytes'] / 2**30:.2f} GiB"
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
