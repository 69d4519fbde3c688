"""``curvsketch spectrum``: top eigenvalues, trace and spectral density at a checkpoint.

Builds the curvature operator of a study configuration on its class-balanced Hessian
samples (:func:`curvsketch.cli.distributed.build_operator`, the same one
``curvsketch measure`` uses, with the trained weights of a checkpoint), sketches its
eigenpairs with the ``[sketch]`` settings and prints the top eigenvalues, the trace with
its standard error and a summary of the spectral density
(:func:`curvsketch.experiments.measure_step.spectrum_estimates`, as the study records
them). Register with :func:`add_command`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any

__all__ = ["add_command"]

#: Bars of the text histogram: ``BAR_WIDTH`` characters for mass 1, none at ``BAR_FLOOR``.
BAR_WIDTH = 30
BAR_FLOOR = 1e-6
#: Eigenvalues printed without ``--top`` (fewer if the sketch computes fewer).
DEFAULT_TOP = 10


def _check_flags(args: argparse.Namespace) -> None:
    """Every flag's value, before any data is loaded (one error naming the flag)."""
    from curvsketch.sketch.trace import TRACE_MIN_PRODUCTS

    if args.top is not None and args.top < 1:
        raise ValueError(f"--top {args.top} must be >= 1 (eigenvalues to print)")
    for flag, value in (("--probes", args.probes), ("--steps", args.steps)):
        if value is not None and value < 0:
            raise ValueError(f"{flag} {value} must be >= 0 (0 skips the spectral density)")
    if args.trace_products is not None and args.trace_products < 0:
        raise ValueError(f"--trace-products {args.trace_products} must be >= 0 (0 skips the trace)")
    if args.bins < 1:
        raise ValueError(f"--bins {args.bins} must be >= 1 (bins of the text histogram)")
    if args.trace_method is not None:
        args.trace_method = args.trace_method.lower()
    method = args.trace_method
    if method is not None and method not in TRACE_MIN_PRODUCTS:
        raise ValueError(
            f"--trace-method {method!r} is not a trace estimator; use one of "
            f"{', '.join(TRACE_MIN_PRODUCTS)}"
        )


def _analysis(config: Any, args: argparse.Namespace) -> Any:
    """``config.analysis`` with the flags that were given, checked."""
    from curvsketch.sketch.trace import TRACE_MIN_PRODUCTS

    a = config.analysis
    changes = {
        "trace_products": args.trace_products,
        "trace_method": args.trace_method,
        "density_probes": args.probes,
        "density_steps": args.steps,
    }
    a = dataclasses.replace(a, **{k: v for k, v in changes.items() if v is not None})
    need = TRACE_MIN_PRODUCTS[a.trace_method]
    if 0 < a.trace_products < need:
        raise ValueError(
            f"--trace-products {a.trace_products}: trace method {a.trace_method!r} needs "
            f">= {need} products (or 0 to skip the trace)"
        )
    return a


def _sig(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _bar(mass: float) -> str:
    if mass <= BAR_FLOOR:
        return ""
    return "#" * max(1, round(BAR_WIDTH * (math.log10(mass) / -math.log10(BAR_FLOOR) + 1)))


def _cmd_spectrum(args: argparse.Namespace) -> int:
    from curvsketch.cli.distributed import build_operator
    from curvsketch.experiments.config import load_config
    from curvsketch.experiments.measure_step import sketch_eigenpairs
    from curvsketch.experiments.preflight import check_study
    from curvsketch.experiments.spectrum_estimates import (
        OUTLIER_FRACTION,
        density_histogram,
        spectrum_estimates,
    )

    _check_flags(args)
    config = load_config(args.config)
    if args.data_root:
        config = dataclasses.replace(
            config, data=dataclasses.replace(config.data, root=args.data_root)
        ).validate()
    analysis = _analysis(config, args)
    dim = check_study(config, analysis=False)
    s = config.sketch
    outer = min(s.outer, dim)
    if args.top is None:
        args.top = min(DEFAULT_TOP, outer)
    elif args.top > outer:
        raise ValueError(
            f"--top {args.top} exceeds the {outer} eigenpairs the sketch computes "
            f"(sketch.outer = {s.outer}, D = {dim}); pass --top <= {outer} or raise "
            "sketch.outer in the configuration"
        )
    op = build_operator(config, args.split, args.checkpoint)
    progress = not args.quiet
    res = sketch_eigenpairs(op, s, progress=progress)
    spec = spectrum_estimates(op, analysis, result=res, seed=s.seed, block_size=s.block_size)

    kind = config.hessian.kind.replace("hessian", "Hessian").replace("ggn", "GGN")
    where = args.checkpoint or "the untrained model (no --checkpoint)"
    print(f"{config.name}: {kind} on {args.split} samples, D = {dim:,}, at {where}")
    inner = f", inner = {res.inner}" if res.inner else ""
    print(
        f"\ntop {args.top} eigenvalues by |λ| ({res.recovery} sketch, outer = {res.outer}"
        f"{inner}, {res.num_products} products):"
    )
    values = res.ritz_values if res.ritz_values is not None else res.eigenvalues
    for i, lam in enumerate(values[: args.top].tolist(), start=1):
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
        help="xtrace, hutch++ or hutchinson (default: analysis.trace_method)",
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
