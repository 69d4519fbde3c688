"""The Markdown of a ``benchmarks/probes/gpu_check.sh`` run (see ``gpu_report.py``): every stage's
status, the CUDA tests, the engines beside curvlinops (ratios from the same run), the
ResNet-18 products, the full-size linear algebra, the krylov solve, and the paper-size
projection with its arithmetic next to the paper's per-stage minutes."""

from __future__ import annotations

from typing import Any

from benchmarks.harness import markdown_table
from benchmarks.probes.gpu_report import GOAL_MIN, INNER, KRYLOV_K, KRYLOV_M, OUTER, PAPER_MIN


def _f(x: Any, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


def _stages(report: dict[str, Any]) -> list[str]:
    rows = [
        [s["stage"], s["status"], _f(s.get("seconds"), ".0f"), s.get("budget", "")]
        for s in report.get("stages", [])
    ]
    return [markdown_table(["stage", "status", "seconds", "budget s"], rows, "llrr")]


def _pytest(report: dict[str, Any]) -> list[str]:
    t = report.get("pytest")
    if not t:
        return ["No pytest results (the stage did not run or wrote no XML)."]
    lines = [f"{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped."]
    lines += [f"- FAILED {x}" for x in t["failures"]]
    if t["skipped"]:
        lines += ["", "<details><summary>skipped</summary>", ""]
        lines += [f"- {x}" for x in t["skips"]] + ["", "</details>"]
    return lines


def _engines(report: dict[str, Any]) -> list[str]:
    e = report.get("engines")
    if not e:
        return ["Not run."]
    meta, rows = e["meta"], e["rows"]
    lines = [
        f"{meta.get('cuda_device') or meta['platform']}, torch {meta['torch']}, "
        f"{meta['samples']} MNIST samples, ResNet-18 on {meta.get('resnet_samples')} "
        f"synthetic {meta.get('resnet_image_size')}² images, float32, median of "
        f"{meta['repeats']}; curvlinops: {meta.get('curvlinops')}.",
        "",
    ]
    pairs = []
    keys = dict.fromkeys((r["model"], r["micro_batch"]) for r in rows)
    for model, mbs in keys:
        rs = [r for r in rows if (r["model"], r["micro_batch"]) == (model, mbs)]
        ok = [r for r in rs if r["seconds_per_vector"] is not None]
        ours = [r for r in ok if r["method"].startswith("curvsketch")]
        cl = [r for r in ok if r["method"] == "curvlinops"]
        grad = [r for r in ok if r["method"] == "gradient"]
        best = min(ours, key=lambda r: r["seconds_per_vector"]) if ours else None
        ratio = cl[0]["seconds_per_vector"] / best["seconds_per_vector"] if best and cl else None
        pairs.append(
            [
                model,
                f"{rs[0]['D']:,}",
                mbs or "all",
                best["method"].split(":")[1] if best else "failed",
                _f(best and best["seconds_per_vector"], ".5f"),
                _f(cl[0]["seconds_per_vector"], ".5f") if cl else "n/a",
                _f(ratio, ".2f") + "×" if ratio else "n/a",
                _f(best["seconds_per_vector"] / grad[0]["seconds_per_vector"], ".2f")
                if best and grad
                else "—",
            ]
        )
    lines.append(
        markdown_table(
            [
                "model",
                "D",
                "micro-batch",
                "best engine",
                "s / HVP",
                "curvlinops s / HVP",
                "curvlinops ÷ ours",
                "HVP ÷ gradient",
            ],
            pairs,
            "lrrlrrrr",
        )
    )
    failed = [r for r in rows if r.get("error")]
    lines += [""] + [f"- {r['model']} {r['method']}: {r['error']}" for r in failed]
    every = [
        [
            r["model"],
            r["method"],
            r["micro_batch"] or "all",
            r["block"],
            _f(r["seconds_per_vector"], ".5f"),
        ]
        for r in rows
    ]
    lines += [
        "<details><summary>every row</summary>",
        "",
        markdown_table(["model", "method", "micro-batch", "block", "s / vector"], every, "llrrr"),
        "",
        "</details>",
    ]
    return lines


def _scale(report: dict[str, Any]) -> list[str]:
    s = report.get("scale")
    if not s:
        return ["Not run."]
    rows = [
        [
            f"{r['samples']:,}",
            r.get("micro_batch"),
            r["block"],
            r.get("engine", "—"),
            _f(r.get("seconds_per_hvp")),
            _f(r.get("peak_cuda_bytes", 0) / 1e9, ".1f"),
            r["status"] + (f" ({len(r['out_of_memory'])} OOM)" if r.get("out_of_memory") else ""),
        ]
        for r in s.get("hvp", [])
    ]
    lines = [
        f"{s.get('model')} on synthetic {s['image_shape'][1]}² images; cuDNN TF32 "
        f"{s['cudnn']['allow_tf32']}, matmul TF32 {s['matmul_allow_tf32']}.",
        "",
        markdown_table(
            ["images", "micro-batch", "block", "engine", "s / HVP", "peak GB", "status"],
            rows,
            "rrrlrrl",
        ),
    ]
    st = s.get("store_run")
    if st:
        if st.get("status") == "ok":
            lines += [
                "",
                f"Store run (products → pinned memory → Zarr, then recovery): o = {st['outer']}, "
                f"s = {st['inner']}, {st['samples']} images: "
                + ", ".join(f"{k} {v:.1f} s" for k, v in st["stages_seconds"].items()),
            ]
        else:
            lines += ["", f"Store run: {st.get('status')}"]
    return lines


def _linalg(report: dict[str, Any]) -> list[str]:
    la = report.get("linalg")
    if not la:
        return ["Not run."]
    lines = []
    for r in la["runs"]:
        head = f"D = {r.get('dim', 0):,}, o = {r.get('outer')}, s = {r.get('inner')}, float32"
        if r.get("status") != "ok":
            lines.append(f"- {head}: {r.get('status')} {r.get('error', '')}")
            continue
        sec = r["seconds"]
        lines.append(
            f"- {head}: QR {sec['qr']:.2f} s, core {sec['core']:.2f} s, eigh {sec['eigh']:.2f} "
            f"s, eigenvectors {sec['eigvec']:.2f} s ({r.get('eigvec_mode')}); total "
            f"{sec['total']:.2f} s; peak {r['bytes'].get('peak', 0) / 1e9:.1f} GB (Y alone "
            f"{r['bytes']['Y'] / 1e9:.1f} GB); top-10 max relative error "
            f"{r['top10_max_rel_error']:.1e}; orthonormality of 64 columns of Q "
            f"{r.get('orth_error_64_columns', float('nan')):.1e}"
        )
    return lines


def _krylov(report: dict[str, Any]) -> list[str]:
    k = report.get("krylov")
    if not k:
        return ["Not run."]
    if k.get("status") != "ok":
        return [f"Status: {k.get('status')}."]
    return [
        f"k = {k['k']}, m = {k['num_products']} products (block {k['block']}), {k['model']} "
        f"over {k['samples']} images of {k['image_size']}², engine {k['engine']}: "
        f"{k['wall_seconds']:.1f} s"
        " (" + ", ".join(f"{a} {b:.2f} s" for a, b in k["seconds"].items()) + f"); "
        f"{k['seconds_per_product']:.4f} s per product; top-10 max ‖r‖/|λ| "
        f"{_f(k['top10_max_relative_residual'], '.2e')}; peak {k['peak_cuda_bytes'] / 1e9:.1f} GB."
    ]


def _projection(report: dict[str, Any]) -> list[str]:
    p = report["projection"]
    lines = [f"Products: {p['hvp_basis']}. Linear algebra: {p['linalg_basis']}."]
    if p.get("status") != "ok":
        return [*lines, "", f"Projection {p['status']}."]
    sp, ar = p["singlepass_seconds"], p["singlepass_arithmetic"]
    rows = []
    for key, label in (
        ("products", "products"),
        ("qr", "QR"),
        ("core", "core solve"),
        ("eigvec", "eigenvectors"),
        ("total", "**total**"),
    ):
        paper = PAPER_MIN.get(key)
        ours = sp[key] / 60
        rows.append(
            [
                label,
                ar[key],
                f"{ours:,.2f}",
                f"{paper:,.0f}" if paper else "(in total)",
                f"{paper / ours:,.1f}×" if paper and ours > 0 else "—",
            ]
        )
    lines += [
        "",
        f"One paper-size Hessian (single pass, o = {OUTER}, s = {INNER}, 5,000 images):",
        "",
        markdown_table(
            ["stage", "arithmetic", "ours, min", "paper, min", "paper ÷ ours"], rows, "llrrr"
        ),
        "",
        f"Goal ≤ {GOAL_MIN:.0f} min (1/40 of the paper's {PAPER_MIN['total']:,.0f}): "
        + ("**met**" if p["meets_goal"] else "**not met**")
        + f" ({sp['total'] / 60:,.1f} min).",
    ]
    if "krylov_seconds" in p:
        ks, ka = p["krylov_seconds"], p["krylov_arithmetic"]
        rows = [
            [k, ka[k], f"{ks[k] / 60:,.2f}"] for k in ("products", "qr", "core", "eigvec", "total")
        ]
        lines += [
            "",
            f"A krylov solve of k = {KRYLOV_K} (m = {KRYLOV_M} products), same data:",
            "",
            markdown_table(["stage", "arithmetic", "min"], rows, "llr"),
            "",
            f"Memory: {p['krylov_memory']}.",
        ]
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The whole report."""
    env = report.get("env") or {}
    args = report.get("args") or {}
    pk = env.get("packages", {})
    title = env.get("device_name") or "CPU"
    lines = [
        f"# GPU check on {title}"
        + (" (REHEARSAL: --quick, not results)" if args.get("quick") else ""),
        "",
        f"`bash benchmarks/probes/gpu_check.sh` {args.get('argv', '')}; torch {env.get('torch')}, "
        f"Python {env.get('python')}, {env.get('platform')}; "
        + ", ".join(f"{k} {v}" for k, v in pk.items())
        + f"; cuDNN TF32 {env.get('cudnn_allow_tf32')}, matmul TF32 "
        f"{env.get('matmul_allow_tf32')}.",
        "",
        "## Stages",
        *_stages(report),
        "",
        "## CUDA tests (`pytest -q tests -k cuda`)",
        *_pytest(report),
        "",
        "## Seconds per HVP beside curvlinops (`hvp_engines.py`)",
        *_engines(report),
        "",
        "## ResNet-18 products over 1,000 and 5,000 images (`gpu_scale.py`)",
        *_scale(report),
        "",
        "## Full-size single-pass linear algebra (`gpu_linalg.py`)",
        *_linalg(report),
        "",
        "## Krylov solve of ResNet-18 (`gpu_krylov.py`)",
        *_krylov(report),
        "",
        "## Projection: one paper-size ResNet-18 Hessian",
        *_projection(report),
    ]
    return "\n".join(lines) + "\n"
