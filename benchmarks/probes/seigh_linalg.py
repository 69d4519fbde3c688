"""Benchmark: SEIGH's linear algebra after the measurements, at the paper's CIFAR scale.

Times the stages that follow the operator products in the single-pass recovery
(Fernandez et al., TMLR 2025, §3, Alg. 2, after Tropp, Yurtsever, Udell, Cevher 2019) for
``D = 10^6``, ``o = 1000``, ``s = 2000`` in float32 by default:

* ``qr``     thin QR of the outer sketch ``Y`` (D × o);
* ``core``   ``ΦQ`` and ``ΨQ`` (test operators applied to blocks of Q's columns, batched
             FFTs) and the least-squares core ``C = (ΦQ)⁺ Z ((ΨQ)ᵀ)⁺``;
* ``eigh``   the small symmetric eigendecomposition of ``C``;
* ``eigvec`` materialising the eigenvectors ``Q V`` (D × o).

The operator is a cheap synthetic one, ``H = U diag(λ) Uᵀ`` of rank ``r`` with alternating
signs, whose sketches are formed exactly from ``ΨU`` and ``ΦU`` alone (``Y = U Λ (Ψ_o U)ᵀ``,
``Z = (ΦU) Λ (ΨU)ᵀ``), so the measurements cost ``2r`` transforms instead of
``s`` operator products. The timed stages do not depend on the operator. The top
eigenvalues are checked against ``λ`` as a sanity check.

Writes ``<out>/<name>.json`` and ``<out>/<name>.md`` (``name`` defaults to ``seigh_linalg``).

Usage::

    python -m benchmarks.probes.seigh_linalg                 # D=1e6, o=1000, s=2000, float32
    python -m benchmarks.probes.seigh_linalg --dim 100000    # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from benchmarks.harness import OUT_DIR, maxrss_bytes
from curvsketch.sketch.noise import make_noise
from curvsketch.sketch.recovery import recover_singlepass
from curvsketch.sketch.result import EighResult
from curvsketch.sketch.seigh import STREAM_PHI, STREAM_PSI

STAGES = ("qr", "core", "eigh", "eigvec")


def synthetic_sketches(
    dim: int,
    outer: int,
    inner: int,
    rank: int,
    dtype: torch.dtype,
    noise: str,
    seed: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, object, object, torch.Tensor]:
    """Exact single-pass sketches ``Y``, ``Z`` of a rank-``rank`` symmetric ``H``."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(dim, rank, generator=gen, dtype=dtype).to(device)
    u = torch.linalg.qr(u).Q
    lam = (torch.arange(1, rank + 1, dtype=dtype) ** -1.0).to(device)
    lam[1::2] *= -1
    psi = make_noise(noise, inner, dim, seed, STREAM_PSI)
    phi = make_noise(noise, inner, dim, seed, STREAM_PHI)
    psi_u = psi.matmul(u)  # (s, r)
    phi_u = phi.matmul(u)
    # H Ψ_oᵀ = U Λ (Ψ_o U)ᵀ, stored column-major as seigh stores Y (measure.column_major)
    y = ((psi_u[:outer] * lam) @ u.T).T
    z = phi_u @ (lam[:, None] * psi_u.T)  # Φ H Ψᵀ
    return y, z, psi, phi, lam


def run(args: argparse.Namespace) -> dict:
    """Build the sketches, time the recovery stages, return a JSON-ready report."""
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    device = torch.device(args.device)
    t0 = time.perf_counter()
    y, z, psi, phi, lam = synthetic_sketches(
        args.dim, args.outer, args.inner, args.rank, dtype, args.noise, args.seed, device
    )
    setup = time.perf_counter() - t0
    print(f"sketches ready in {setup:.1f} s: Y {tuple(y.shape)}, Z {tuple(z.shape)}", flush=True)

    timings: dict[str, float] = {}
    factors = recover_singlepass(y, z, phi, psi, block_size=args.block_size, timings=timings)
    del y
    sort_time = timings.pop("eigvec")
    timings["eigh"] += sort_time  # sorting the small eigenpairs belongs with the eigh
    result = EighResult(factors.values, factors.basis, factors.rot, outer=args.outer)
    t0 = time.perf_counter()
    vectors = result.eigenvectors  # Q @ V, D × o
    if device.type == "cuda":
        torch.cuda.synchronize()
    timings["eigvec"] = time.perf_counter() - t0
    del vectors

    ref = lam[torch.argsort(lam.abs(), descending=True)][:10].double()
    top = result.eigenvalues[:10].double()
    rel_err = float(((top - ref).abs() / ref.abs()).max())
    total = sum(timings[s] for s in STAGES)
    return {
        "benchmark": "seigh_linalg",
        "params": {
            "dim": args.dim,
            "outer": args.outer,
            "inner": args.inner,
            "rank": args.rank,
            "dtype": args.dtype,
            "noise": args.noise,
            "block_size": args.block_size,
            "seed": args.seed,
            "device": str(device),
        },
        "seconds": {s: round(timings[s], 3) for s in STAGES},
        "total_seconds": round(total, 3),
        "setup_seconds": round(setup, 3),
        "top10_max_rel_error": rel_err,
        "peak_rss_gib": round(maxrss_bytes() / 2**30, 2),
        "machine": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        },
    }


def markdown(report: dict) -> str:
    """The report as a Markdown table."""
    p = report["params"]
    lines = [
        f"# seigh linear algebra: D={p['dim']:,}, o={p['outer']}, s={p['inner']}, "
        f"{p['dtype']}, noise={p['noise']}, device={p['device']}",
        "",
        "| stage | seconds |",
        "|---|---:|",
    ]
    lines += [f"| {s} | {report['seconds'][s]:.1f} |" for s in STAGES]
    lines += [f"| **total** | **{report['total_seconds']:.1f}** |", ""]
    m = report["machine"]
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ""
    lines.append(
        f"torch {m['torch']}, {m['threads']} threads on {m['cpus']} CPUs{gpu} "
        f"(load average at the end: {m['load_avg_1min_at_end']}); peak RSS "
        f"{report['peak_rss_gib']} GiB; top-10 eigenvalue max relative error "
        f"{report['top10_max_rel_error']:.2e} (synthetic rank-{p['rank']} operator)."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=1_000_000)
    parser.add_argument("--outer", type=int, default=1000)
    parser.add_argument("--inner", type=int, default=2000)
    parser.add_argument("--rank", type=int, default=32, help="rank of the synthetic operator")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--noise", choices=["ssrft", "gaussian", "rademacher"], default="ssrft")
    parser.add_argument("--block-size", type=int, default=None, help="columns per transform")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu", help="where the linear algebra runs")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--name", default="seigh_linalg", help="stem of the output files")
    args = parser.parse_args(argv)
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
