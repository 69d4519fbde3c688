"""The reduced mode of ``benchmarks/probes/gpu_scale.py`` (``--hvp-samples``): seconds per
ResNet-18 HVP over given numbers of synthetic images, micro-batched, and optionally the
complete reduced store run; plus :func:`bench_model`, ResNet-18 or the tiny stand-in that
``--quick`` CPU rehearsals use. Run through ``gpu_scale.py``, not on its own."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.harness import write_json
from curvsketch.experiments.models import build_model
from curvsketch.operators import HessianOperator


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_model(name: str, num_classes: int = 1000) -> nn.Module:
    """``"resnet18"`` (or another name of ``curvsketch.experiments.models``), or
    ``"tiny-cnn"``: conv, batch norm, ReLU, pooling and a linear head with a few hundred
    parameters, the stand-in that ``--quick`` CPU rehearsals use in ResNet-18's place."""
    if name != "tiny-cnn":
        return build_model(name, num_classes=num_classes, seed=0)
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def _synthetic_images(n: int, shape: tuple[int, ...], classes: int, device: torch.device):
    """``n`` seeded Gaussian images and labels, made on ``device`` (5000 × 3×224×224
    float32 is 3 GB: generated there rather than copied)."""
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, *shape, generator=g, device=device)
    y = torch.randint(0, classes, (n,), generator=g, device=device)
    return x, y


def time_hvps(
    *,
    model_name: str = "resnet18",
    samples_list: list[int],
    micro_batch: int,
    block_size: int,
    input_shape: tuple[int, ...],
    device: torch.device,
    engine: str,
    repeats: int,
    rows: list[dict[str, Any]],
    save,
) -> None:
    """Seconds per HVP of ``model_name`` (ResNet-18) over each number of images in
    ``samples_list``.

    One block product of ``block_size`` vectors per timing (median of ``repeats``, one for
    the largest set); the warm-up (engine choice, cuDNN's first calls) runs on one
    micro-batch. Out of memory: the micro-batch is halved (at most twice) and the row says
    so. Appends a row per size to ``rows`` and calls ``save()`` after each.
    """
    model = bench_model(model_name).to(device).eval()
    x, y = _synthetic_images(max(samples_list), input_shape, 1000, device)
    loss = nn.CrossEntropyLoss()
    v = torch.randn(sum(p.numel() for p in model.parameters()), block_size, device=device)
    mb = micro_batch
    for n in samples_list:
        row: dict[str, Any] = {"samples": n, "block": block_size, "status": "started"}
        rows.append(row)
        warm, times = None, []
        for _attempt in range(3):
            row["micro_batch"] = min(mb, n)
            try:
                warm = HessianOperator(
                    model, loss, (x[:mb], y[:mb]), engine=engine, check_determinism=False
                )
                warm @ v
                engine = warm.engine
                op = HessianOperator(
                    model,
                    loss,
                    (x[:n], y[:n]),
                    micro_batch_size=mb,
                    engine=engine,
                    check_determinism=False,
                )
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                times = []
                for _ in range(1 if n == max(samples_list) else repeats):
                    sync(device)
                    t0 = time.perf_counter()
                    op @ v
                    sync(device)
                    times.append(time.perf_counter() - t0)
                    row["seconds_per_block"] = sorted(times)[len(times) // 2]
                    row["seconds_per_hvp"] = row["seconds_per_block"] / block_size
                    save()
            except torch.OutOfMemoryError as err:
                row.setdefault("out_of_memory", []).append(f"micro_batch={mb}: {str(err)[:160]}")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                mb = max(1, mb // 2)
                continue
            break
        row.update(engine=engine, repeats=len(times), status="ok" if times else "failed")
        row["engine_timings"] = dict(getattr(warm, "engine_timings", {}))
        row["peak_cuda_bytes"] = (
            int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else 0
        )
        save()
        print(
            f"{model_name} over {n} images ({input_shape[1]}x{input_shape[2]}), micro-batch "
            f"{row['micro_batch']}, block {block_size}, {engine}: "
            f"{row.get('seconds_per_hvp', float('nan')):.3f} s per HVP",
            flush=True,
        )


def reduced(args: argparse.Namespace, device: torch.device, run_scale: Callable) -> int:
    """``gpu_scale.py``'s reduced mode: HVP seconds per image count, then optionally the
    store run (``run_scale``, passed in by ``gpu_scale.main``)."""
    shape = (3, args.image_size, args.image_size)
    report: dict[str, Any] = {
        "benchmark": "gpu_scale_reduced",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "quick": args.quick,
        "model": args.model,
        "image_shape": list(shape),
        "cudnn": {
            "allow_tf32": torch.backends.cudnn.allow_tf32,
            "benchmark": torch.backends.cudnn.benchmark,
            "deterministic": torch.backends.cudnn.deterministic,
        },
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "hvp": [],
    }
    path = Path(args.json)

    def save() -> None:
        write_json(path, report, indent=2)

    save()
    sizes = [int(n) for n in args.hvp_samples.split(",") if n]
    time_hvps(
        model_name=args.model,
        samples_list=sizes,
        micro_batch=args.micro_batch,
        block_size=args.block_size,
        input_shape=shape,
        device=device,
        engine=args.engine,
        repeats=2,
        rows=report["hvp"],
        save=save,
    )
    if args.store_run:
        report["store_run"] = {"status": "started"}
        save()
        tmp = tempfile.mkdtemp(prefix="gpu_scale-")
        try:
            report["store_run"] = run_scale(
                model_name=args.model,
                input_shape=shape,
                num_classes=1000,
                samples=args.samples,
                micro_batch=min(args.micro_batch, args.samples),
                outer=args.outer,
                inner=args.inner,
                block_size=min(args.block_size, args.inner),
                device=device,
                store_dir=Path(tmp) / "store",
                engine=args.engine,
            )
            report["store_run"]["status"] = "ok"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            save()
    ok = all(r.get("status") == "ok" for r in report["hvp"])
    return 0 if ok else 1
