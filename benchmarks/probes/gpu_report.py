"""Collect the stages of ``benchmarks/probes/gpu_check.sh`` into one JSON and one Markdown report,
with the projection of a paper-size ResNet-18 Hessian next to the paper's minutes.

    python -m benchmarks.probes.gpu_report env WORK/env.json
    python -m benchmarks.probes.gpu_report merge WORK OUTDIR    # OUTDIR/gpu_check.{json,md}
    python -m benchmarks.probes.gpu_report results OUTDIR/gpu_check.json --dest benchmarks/results

``merge`` runs after every stage, so the report always holds what was measured so far.
``results`` writes ``gpu_<name>.md`` (and the JSON beside it) for the repository; it
refuses a ``--quick`` or non-CUDA run unless ``--allow-rehearsal`` (rehearsal numbers are
not GPU results: write them under /tmp).

The paper (Fernandez et al., TMLR 2025, ImageNet/ResNet-18, o = 1500, s = 3000, 5000
images, one GPU): 8,760 min of products, 90 min QR, 610 min core solve, 9,586 min in all.
Projection of one such Hessian from this run's measurements: products = s × (seconds per
HVP over 5,000 images); QR, core and eigenvectors as measured at D = 11,689,512,
o = 1500, s = 3000 (scaled linearly in D where only a smaller D ran). A krylov solve of
k = 1500 (m = 3000 products, block 64): the same products; its orthogonalisation scaled
from this run's krylov solve as D·m² and its small eigh as m³; forming the k Ritz vectors
``Q W`` (D·m·k) scaled from the measured ``Q W`` at o = 1500.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS_DIR, write_json

RESNET18_D = 11_689_512
PAPER_MIN = {"products": 8760.0, "qr": 90.0, "core": 610.0, "total": 9586.0}
GOAL_MIN = 240.0
OUTER, INNER, IMAGES = 1500, 3000, 5000
KRYLOV_K, KRYLOV_M = 1500, 3000


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def env_info() -> dict[str, Any]:
    """Versions, device and the numeric settings that change float32 results (TF32)."""
    import importlib

    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "packages": {},
    }
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        info.update(
            device_name=torch.cuda.get_device_name(),
            device_total_bytes=int(total),
            device_free_bytes=int(free),
            torch_cuda=torch.version.cuda,
        )
    for name in ("numpy", "scipy", "zarr", "numcodecs", "dask", "mlxtend", "curvlinops"):
        try:
            mod = importlib.import_module(name)
            info["packages"][name] = getattr(mod, "__version__", "?")
        except Exception as err:  # report, do not fail: the stages say what they need
            info["packages"][name] = f"missing ({type(err).__name__})"
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        info["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["nvidia_smi"] = None
    return info


def pytest_summary(xml_path: Path) -> dict[str, Any] | None:
    """Counts and the failed/skipped test names from pytest's JUnit XML."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return None
    out: dict[str, Any] = {"passed": 0, "failed": 0, "skipped": 0, "failures": [], "skips": []}
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            out["failed"] += 1
            out["failures"].append(f"{name}: {(bad.get('message') or '')[:300]}")
        elif skip is not None:
            out["skipped"] += 1
            out["skips"].append(f"{name}: {(skip.get('message') or '')[:120]}")
        else:
            out["passed"] += 1
    return out


def _hvp_5000(scale: dict | None) -> tuple[float | None, str]:
    rows = [r for r in (scale or {}).get("hvp", []) if r.get("seconds_per_hvp")]
    if not rows:
        return None, "no ResNet-18 HVP was timed"
    exact = [r for r in rows if r["samples"] == IMAGES]
    if exact:
        r = exact[0]
        return r["seconds_per_hvp"], (
            f"{r['seconds_per_hvp']:.3f} s per HVP over {IMAGES:,} images (measured, "
            f"micro-batch {r['micro_batch']}, block {r['block']}, {r['engine']})"
        )
    r = max(rows, key=lambda r: r["samples"])
    t = r["seconds_per_hvp"] * IMAGES / r["samples"]
    return t, (
        f"{r['seconds_per_hvp']:.4g} s per HVP over {r['samples']:,} images × "
        f"{IMAGES:,}/{r['samples']:,} = {t:.3f} s (scaled linearly in the images)"
    )


def _linalg(linalg: dict | None) -> tuple[dict[str, float] | None, str]:
    ok = [r for r in (linalg or {}).get("runs", []) if r.get("status") == "ok"]
    if not ok:
        return None, "the linear algebra did not complete"
    r = ok[0]
    f = RESNET18_D / r["dim"] * (OUTER / r["outer"]) ** 2
    sec = {k: r["seconds"][k] * f for k in ("qr", "core", "eigh", "eigvec")}
    how = (
        "measured at the full size"
        if f == 1
        else f"measured at D={r['dim']:,}, o={r['outer']} and scaled ×{f:.4g} (D·o²)"
    )
    return sec, how


def projection(report: dict[str, Any]) -> dict[str, Any]:
    """The paper-size single-pass and krylov projections, with the arithmetic as text."""
    t_hvp, hvp_how = _hvp_5000(report.get("scale"))
    la, la_how = _linalg(report.get("linalg"))
    out: dict[str, Any] = {"hvp_basis": hvp_how, "linalg_basis": la_how}
    if t_hvp is None or la is None:
        out["status"] = "incomplete: " + "; ".join(
            s for s, ok in ((hvp_how, t_hvp), (la_how, la)) if ok is None
        )
        return out
    prod = INNER * t_hvp
    sp = {
        "products": prod,
        "qr": la["qr"],
        "core": la["core"] + la["eigh"],
        "eigvec": la["eigvec"],
    }
    sp["total"] = sum(sp.values())
    out["singlepass_seconds"] = sp
    out["singlepass_arithmetic"] = {
        "products": f"{INNER:,} × {t_hvp:.3f} s = {prod:,.0f} s = {prod / 60:,.1f} min",
        "qr": f"{la['qr']:.1f} s ({la_how})",
        "core": f"core {la['core']:.1f} s + eigh {la['eigh']:.2f} s",
        "eigvec": f"{la['eigvec']:.1f} s",
        "total": " + ".join(f"{sp[k]:,.1f}" for k in ("products", "qr", "core", "eigvec"))
        + f" = {sp['total']:,.1f} s = {sp['total'] / 60:,.1f} min",
    }
    out["meets_goal"] = sp["total"] / 60 <= GOAL_MIN
    kr = report.get("krylov") or {}
    if kr.get("status") == "ok":
        d, m = kr["D"], kr["num_products"]
        fq = (RESNET18_D / d) * (KRYLOV_M / m) ** 2
        fe = (KRYLOV_M / m) ** 3
        vec = la["eigvec"] * KRYLOV_M / OUTER  # (D·m·k) / (D·o·o) with k = o
        ks = {
            "products": KRYLOV_M * t_hvp,
            "qr": kr["seconds"]["qr"] * fq,
            "core": (kr["seconds"].get("eigh", 0.0) + kr["seconds"].get("core", 0.0)) * fe,
            "eigvec": vec,
        }
        ks["total"] = sum(ks.values())
        basis_gb = RESNET18_D * KRYLOV_M * 4 / 1e9
        vec_gb = RESNET18_D * KRYLOV_K * 4 / 1e9
        total_gb = (report.get("env") or {}).get("device_total_bytes", 0) / 1e9
        out["krylov_seconds"] = ks
        out["krylov_arithmetic"] = {
            "products": f"{KRYLOV_M:,} × {t_hvp:.3f} s = {ks['products']:,.0f} s",
            "qr": f"{kr['seconds']['qr']:.2f} s at D={d:,}, m={m} × {fq:.4g} (D·m²)",
            "core": f"eigh + Ritz step {kr['seconds'].get('eigh', 0):.3f} s × {fe:.4g} (m³)",
            "eigvec": f"Q W: {la['eigvec']:.1f} s (D×1500 · 1500×1500) × {KRYLOV_M}/{OUTER}",
            "total": f"{ks['total']:,.1f} s = {ks['total'] / 60:,.1f} min",
        }
        out["krylov_memory"] = (
            f"basis D×m float32 = {basis_gb:.1f} GB, Ritz vectors D×k = {vec_gb:.1f} GB; "
            + (
                f"the device has {total_gb:.1f} GB: "
                + ("fits" if basis_gb + vec_gb < 0.95 * total_gb else "does NOT fit on one GPU")
                if total_gb
                else "device memory unknown"
            )
        )
    out["status"] = "ok"
    return out


def merge(work: Path, outdir: Path) -> dict[str, Any]:
    """Combine the stage files in ``work`` into ``outdir/gpu_check.{json,md}``."""
    stages = []
    status = work / "stages.jsonl"
    if status.exists():
        stages = [json.loads(x) for x in status.read_text().splitlines() if x.strip()]
    engines = _load(work / "engines" / "hvp_engines_cuda.json") or _load(
        work / "engines" / "hvp_engines.json"
    )
    report: dict[str, Any] = {
        "env": _load(work / "env.json"),
        "args": _load(work / "args.json"),
        "stages": stages,
        "pytest": pytest_summary(work / "pytest_cuda.xml"),
        "engines": engines,
        "scale": _load(work / "scale.json"),
        "linalg": _load(work / "linalg.json"),
        "krylov": _load(work / "krylov.json"),
    }
    report["projection"] = projection(report)
    outdir.mkdir(parents=True, exist_ok=True)
    write_json(outdir / "gpu_check.json", report, indent=2)
    from benchmarks.probes.gpu_markdown import markdown

    (outdir / "gpu_check.md").write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env", help="write the environment JSON")
    e.add_argument("json", type=Path)
    m = sub.add_parser("merge", help="combine the stage files")
    m.add_argument("work", type=Path)
    m.add_argument("outdir", type=Path)
    r = sub.add_parser("results", help="write gpu_<name>.md for the repository")
    r.add_argument("json", type=Path)
    r.add_argument("--dest", type=Path, default=RESULTS_DIR)
    r.add_argument("--name", default="h200")
    r.add_argument("--allow-rehearsal", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "env":
        write_json(args.json, env_info(), indent=2)
        return 0
    if args.cmd == "merge":
        merge(args.work, args.outdir)
        return 0
    report = json.loads(args.json.read_text())
    run_args = report.get("args") or {}
    rehearsal = run_args.get("quick") or run_args.get("device") != "cuda"
    if rehearsal and not args.allow_rehearsal:
        print(
            f"results: {args.json} is a rehearsal (device={run_args.get('device')}, "
            f"quick={run_args.get('quick')}), not GPU results; pass --allow-rehearsal and a "
            "--dest outside the repository",
            file=sys.stderr,
        )
        return 2
    from benchmarks.probes.gpu_markdown import markdown

    report["projection"] = projection(report)
    args.dest.mkdir(parents=True, exist_ok=True)
    (args.dest / f"gpu_{args.name}.md").write_text(markdown(report))
    write_json(args.dest / f"gpu_{args.name}.json", report, indent=2)
    print(f"wrote {args.dest / f'gpu_{args.name}.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
