"""The single-pass linear algebra at the paper's ImageNet size on one GPU, stage by stage.

After the products, SEIGH (Fernandez et al., TMLR 2025, §3, Alg. 2, after Tropp,
Yurtsever, Udell, Cevher 2019) needs the thin QR of the outer sketch ``Y`` (``D × o``),
the test operators applied to ``Q`` and the least-squares core, the small ``eigh`` and the
eigenvectors ``Q W``. For ResNet-18 (``D = 11,689,512``) at ``o = 1500``, ``s = 3000`` in
float32, ``Y`` alone is 70.1 GB, and ``torch.linalg.qr`` writes ``Q`` into a second
``D × o`` buffer, so the QR needs 140.3 GB: it fits the H200's ~150 GB, with ``Y`` freed
before the core and eigenvectors (which again need ``Q`` and ``Q W``, 140.3 GB). This
script calls curvsketch's own stage functions (:mod:`curvsketch.sketch.recovery`) in that
order, frees each input as soon as it is spent, and times each stage. The sketches are
those of a synthetic rank-``r`` operator (``benchmarks/probes/seigh_linalg.py``); the timed
stages do not depend on the operator, and the top eigenvalues are checked against it.

If the full size does not fit (or fails), the script says why and runs ``D/10`` next
(1.75·10⁹ entries, under 2³¹, in case a 32-bit index in a solver is the cause); the
report then marks the times as scaled (QR, core and eigenvectors are linear in ``D``).
After the QR, the orthonormality of 64 random columns of ``Q`` is checked, and at the end
the top-10 eigenvalues against the synthetic operator's, so a solver that returns
garbage at this size is caught rather than timed.

    python -m benchmarks.probes.gpu_linalg --json out.json           # full size, CUDA
    python -m benchmarks.probes.gpu_linalg --json out.json --device cpu --quick

The JSON is rewritten after every stage, so a run stopped by a timeout keeps what it had.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import write_json
from benchmarks.probes.seigh_linalg import synthetic_sketches
from curvsketch.sketch.recovery import (
    apply_test_operators,
    core_solve,
    eigh_by_magnitude,
    orthonormal_basis,
)

RESNET18_D = 11_689_512


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free_bytes(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    return int(torch.cuda.mem_get_info(device)[0])


def _peak(device: torch.device) -> int:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else 0


def eigenvectors_in_place(q: torch.Tensor, w: torch.Tensor, rows: int) -> torch.Tensor:
    """``Q W`` written over ``Q`` one row block at a time (``Q``'s memory plus one block):
    the fallback where a second ``D × o`` buffer does not fit."""
    for i in range(0, q.shape[0], rows):
        q[i : i + rows] = q[i : i + rows] @ w
    return q


def run_size(dim: int, args: argparse.Namespace, rec: dict[str, Any], save) -> None:
    """Time the stages at one ``dim``; fill ``rec`` and call ``save()`` after each stage."""
    device = torch.device(args.device)
    o, s = args.outer, args.inner
    itemsize = 4
    rec.update(dim=dim, outer=o, inner=s, rank=args.rank, dtype="float32", seconds={})
    y_bytes = dim * o * itemsize
    rec["bytes"] = {"Y": y_bytes, "qr_peak_estimate": 2 * y_bytes, "free_before": None}
    free = _free_bytes(device)
    rec["bytes"]["free_before"] = free
    if args.max_bytes is not None:  # rehearse the fallback without a GPU
        free = min(free or args.max_bytes, args.max_bytes)
    if free is not None and 2 * y_bytes > free:
        raise MemoryError(
            f"Y and Q need {2 * y_bytes / 1e9:.3g} GB, {free / 1e9:.3g} GB free on {device}"
        )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    y, z, psi, phi, lam = synthetic_sketches(
        dim, o, s, args.rank, torch.float32, "ssrft", 0, device
    )
    _sync(device)
    rec["setup_seconds"] = time.perf_counter() - t0
    rec["status"] = "sketches ready"
    save()
    _free_bytes(device)

    t0 = time.perf_counter()
    q = orthonormal_basis(y)
    _sync(device)
    rec["seconds"]["qr"] = time.perf_counter() - t0
    rec["bytes"]["peak_after_qr"] = _peak(device)
    del y
    cols = torch.randperm(o, generator=torch.Generator().manual_seed(1))[:64].to(device)
    gram = q[:, cols].T.double() @ q[:, cols].double()
    rec["orth_error_64_columns"] = float((gram - torch.eye(len(cols), device=device)).abs().max())
    del gram
    rec["status"] = "qr done"
    save()
    _free_bytes(device)

    t0 = time.perf_counter()
    phi_q, psi_q = apply_test_operators(phi, psi, q, z.shape[1], block_size=args.block_size)
    core = core_solve(phi_q, z, psi_q)
    _sync(device)
    rec["seconds"]["core"] = time.perf_counter() - t0
    rec["status"] = "core done"
    save()

    t0 = time.perf_counter()
    values, w = eigh_by_magnitude(core)
    _sync(device)
    rec["seconds"]["eigh"] = time.perf_counter() - t0
    save()

    free = _free_bytes(device)
    t0 = time.perf_counter()
    if free is None or free > y_bytes + (1 << 30):
        vectors = q @ w
        rec["eigvec_mode"] = "Q @ W (second D×o buffer)"
    else:
        vectors = eigenvectors_in_place(q, w, rows=1 << 20)
        rec["eigvec_mode"] = "in place, row blocks of 2^20"
    _sync(device)
    rec["seconds"]["eigvec"] = time.perf_counter() - t0
    rec["bytes"]["peak"] = _peak(device)
    del vectors, q

    ref = lam[torch.argsort(lam.abs(), descending=True)][:10].double().cpu()
    top = values[:10].double().cpu()
    rec["top10_max_rel_error"] = float(((top - ref).abs() / ref.abs()).max())
    rec["seconds"]["total"] = sum(rec["seconds"][k] for k in ("qr", "core", "eigh", "eigvec"))
    rec["status"] = "ok"
    save()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", type=Path, required=True, help="output file (rewritten per stage)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="D=20,000, o=30, s=60 (smoke run)")
    p.add_argument("--dim", type=int, default=RESNET18_D)
    p.add_argument("--outer", type=int, default=1500)
    p.add_argument("--inner", type=int, default=3000)
    p.add_argument("--rank", type=int, default=64, help="rank of the synthetic operator")
    p.add_argument("--block-size", type=int, default=None, help="columns per SSRFT transform")
    p.add_argument("--max-bytes", type=int, help="treat this as the free memory (rehearsal)")
    args = p.parse_args(argv)
    if args.quick:
        args.dim, args.outer, args.inner, args.rank = 20_000, 30, 60, 16
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_linalg: CUDA is not available; pass --device cpu", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "benchmark": "gpu_linalg",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "quick": args.quick,
        "target_dim": args.dim,
        "runs": [],
    }
    if device.type == "cuda":
        report["device_total_bytes"] = int(torch.cuda.mem_get_info(device)[1])

    def save() -> None:
        write_json(args.json, report, indent=2)

    for dim in (args.dim, args.dim // 10):
        rec: dict[str, Any] = {"status": "started"}
        report["runs"].append(rec)
        try:
            run_size(dim, args, rec, save)
        except (RuntimeError, MemoryError) as err:  # torch.OutOfMemoryError is a RuntimeError
            rec["status"] = "failed"
            rec["error"] = f"{type(err).__name__}: {str(err)[:400]}"
            traceback.print_exc()
            save()
            continue  # the next size starts with empty_cache(), once this frame is gone
        finally:
            save()
        print(
            f"gpu_linalg D={dim:,} o={args.outer} s={args.inner}: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in rec["seconds"].items())
            + f"; top-10 max rel. error {rec['top10_max_rel_error']:.1e}",
            flush=True,
        )
        break
    ok = [r for r in report["runs"] if r.get("status") == "ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
