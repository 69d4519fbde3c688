"""``curvsketch spectrum``: top eigenvalues, trace and spectral density at a checkpoint.

Builds the curvature operator of a study configuration on its class-balanced Hessian
samples (:func:`curvsketch.cli.distributed.build_operator`, the same one
``curvsketch measure`` uses, with the trained weights of a checkpoint) and prints what
:mod:`curvsketch.experiments.spectrum` computes on it: the eigenpairs sketched with the
``[sketch]`` settings, the trace with its standard error and a summary of the spectral
density (as the study records them). No maths here. Register with :func:`add_command`.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

__all__ = ["add_command"]

#: Bars of the text histogram: ``BAR_WIDTH`` characters for mass 1, none at ``BAR_FLOOR``.
BAR_WIDTH = 30
BAR_FLOOR = 1e-6
#: The flag of each argument of :func:`curvsketch.experiments.spectrum.prepare_spectrum`.
FLAGS = {
    "top": "--top",
    "trace_products": "--trace-products",
    "trace_method": "--trace-method",
    "density_probes": "--probes",
    "density_steps": "--steps",
}
#: How the printed eigenvalues are ordered, by ``[sketch] which``.
ORDER = {"LM": "largest |λ|", "LA": "largest (algebraic)", "SA": "smallest (algebraic)"}


def _sig(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _bar(mass: float) -> str:
    if mass <= BAR_FLOOR:
        return ""
    return "#" * max(1, round(BAR_WIDTH * (math.log10(mass) / -math.log10(BAR_FLOOR) + 1)))


def _cmd_spectrum(args: argparse.Namespace) -> int:
    from curvsketch.cli.distributed import build_operator
    from curvsketch.experiments.config import load_config
    from curvsketch.experiments.spectrum import compute_spectrum, prepare_spectrum
    from curvsketch.experiments.spectrum_estimates import OUTLIER_FRACTION, density_histogram

    if args.bins < 1:
        raise ValueError(f"--bins {args.bins} must be >= 1 (bins of the text histogram)")
    config = load_config(args.config, data_root=args.data_root)
    job = prepare_spectrum(
        config,
        top=args.top,
        trace_products=args.trace_products,
        trace_method=args.trace_method,
        density_probes=args.probes,
        density_steps=args.steps,
        flags=FLAGS,
    )
    op = build_operator(config, args.split, args.checkpoint)
    report = compute_spectrum(op, job, progress=not args.quiet)
    res, spec, dim = report.result, report.estimates, job.dim

    kind = config.hessian.kind.replace("hessian", "Hessian").replace("ggn", "GGN")
    where = args.checkpoint or "the untrained model (no --checkpoint)"
    print(f"{config.name}: {kind} on {args.split} samples, D = {dim:,}, at {where}")
    inner = f", inner = {res.inner}" if res.inner else ""
    print(
        f"\ntop {job.top} eigenvalues, {ORDER[job.plan.which]} first ({res.recovery} sketch, "
        f"outer = {res.outer}{inner}, {res.num_products} products):"
    )
    for i, lam in enumerate(report.values.tolist(), start=1):
        print(f"  {i:>4}  {lam: .6e}")
    if spec.trace is None:
        print("\ntrace: skipped (--trace-products 0)")
    else:
        t = spec.trace
        deflated = f", {t.deflated} eigenpairs deflated" if t.deflated else ""
        print(
            f"\ntrace: {t.value:.6g} ± {_sig(t.standard_error)} (standard error; "
            f"{t.method}, {t.num_products} products{deflated})"
        )
    d, rec = spec.density, spec.record["density"]
    if d is None:
        print("\nspectral density: skipped (--probes 0 or --steps 0)")
        return 0
    spikes = f", {rec['deflated']} deflated eigenvalues as spikes" if rec["deflated"] else ""
    print(
        f"\nspectral density (stochastic Lanczos quadrature, {d.num_probes} probes x "
        f"{d.lanczos_steps} Lanczos steps, {d.num_products} products{spikes}):"
    )
    (m1, e1), (m2, e2) = ((m["value"], m["standard_error"]) for m in rec["moments"][:2])
    lo, hi = rec["range"]
    om = rec["outlier_mass"]
    print(f"  nodes in [{lo:.4g}, {hi:.4g}]; broadened with σ = {d.sigma:.3g}")
    print(f"  mean eigenvalue ∫λ dμ = {m1:.4g} ± {_sig(e1)} (x D = {m1 * dim:.6g})")
    print(f"  mean squared eigenvalue ∫λ² dμ = {m2:.4g} ± {_sig(e2)}")
    print(
        f"  mass outside the bulk (|λ| > {OUTLIER_FRACTION:g} max|λ| = {om['threshold']:.3g}): "
        f"{om['value']:.4g} ± {_sig(om['standard_error'])}"
    )
    print(f"  fraction of eigenvalues per bin (bars: log scale, {BAR_FLOOR:g} .. 1):")
    for b_lo, b_hi, mass in density_histogram(d, args.bins):
        print(f"    [{b_lo:>10.4g}, {b_hi:>10.4g})  {mass:>9.3e}  {_bar(mass)}")
    return 0


def add_command(subparsers: Any) -> None:
    """Register ``spectrum`` on an ``argparse`` subparsers object."""
    from curvsketch.experiments.spectrum import DEFAULT_TOP, TRACE_METHODS

    p = subparsers.add_parser(
        "spectrum",
        help="top eigenvalues, trace and spectral density of a study's Hessian at a checkpoint",
        description="Build the Hessian (or GGN) of CONFIG on its class-balanced Hessian "
        "samples with the weights of a checkpoint, sketch its eigenpairs with the [sketch] "
        "settings and print the top eigenvalues, the trace ± its standard error (XTrace by "
        "default) and a summary of the spectral density (stochastic Lanczos quadrature): "
        "its range, first moments, mass outside the bulk and a coarse histogram. Trace and "
        "density are deflated by the sketch when sketch.recovery is hmt or krylov. "
        "Defaults of the estimator flags come from the configuration's [analysis].",
        epilog="example: curvsketch spectrum configs/mnist16.toml --checkpoint "
        "results/mnist16/checkpoints/step_00001000.pt --split test --top 10",
    )
    p.add_argument("config", help="TOML study configuration, e.g. configs/mnist16.toml")
    p.add_argument(
        "--checkpoint",
        help="trained model: a checkpoint of `curvsketch run` (OUT/checkpoints/step_*.pt) "
        "or a plain state_dict file (default: the untrained model)",
    )
    p.add_argument("--split", default="train", help="Hessian samples: train or test")
    p.add_argument(
        "--top",
        type=int,
        help=f"eigenvalues to print, at most sketch.outer (default {DEFAULT_TOP})",
    )
    p.add_argument(
        "--trace-products",
        type=int,
        help="products of the trace estimate; 0 skips it (default: analysis.trace_products)",
    )
    p.add_argument(
        "--trace-method",
        help=f"{', '.join(TRACE_METHODS)} (default: analysis.trace_method)",
    )
    p.add_argument(
        "--probes",
        type=int,
        help="probes of the spectral density; 0 skips it (default: analysis.density_probes)",
    )
    p.add_argument(
        "--steps",
        type=int,
        help="Lanczos steps per probe; 0 skips the density (default: analysis.density_steps)",
    )
    p.add_argument("--bins", type=int, default=12, help="bins of the text histogram (default 12)")
    p.add_argument("--data-root", help="folder holding a local data set (overrides data.root)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_spectrum)
