"""Entry point of the ``curvsketch`` command: parses arguments, calls experiments.

No maths here: every command builds a configuration and hands it to
:mod:`curvsketch.experiments`; this module only formats what comes back.
"""

from __future__ import annotations

import argparse
import errno
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

EPILOG = """\
examples:
  curvsketch demo                       the paper's 16x16 MNIST study (~10 min on 2 cores)
  curvsketch demo --quick               the same net, 3 steps, sketch only (~2 min)
  curvsketch run configs/mnist16.toml --out results/mnist16
  curvsketch run configs/cifar10_3c3d.toml --data-root ~/data
  curvsketch metrics-study --out results/metrics
  curvsketch measure configs/mnist16.toml --store sk.zarr --worker 0 --of 4   (job arrays)
  curvsketch recover --store sk.zarr --out eig.pt
  curvsketch spectrum configs/mnist16.toml --checkpoint results/mnist16/checkpoints/step_00001000.pt
                                        top eigenvalues, trace ± error, spectral density

Outputs (in --out): results.json (settings, per step and split the overlaps at the
configured k for each mask kind, exact and sketched, chance, eigenvalues, error
estimates, trace ± standard error, spectral density summary, products and timings),
arrays.npz (full curves, spectra, densities), figures/*.png,
checkpoints/ and steps/ (reused when nothing they depend on changed; README, Results format).
"""


def _summary_table(results: dict) -> str:
    """Format the study summary as a fixed-width table."""
    rows = results.get("summary", [])
    if not rows:
        return "(no step reached the main k; see results.json)"
    head = (
        f"{'step':>6} {'split':>5} {'k':>4} {'magnitude':>9} {'exact':>7} {'|diff|':>7} "
        f"{'random':>7} {'best':>7} {'chance':>7} {'÷chance':>7} {'rel.err':>7} {'top10 λ':>8}"
    )
    lines = [head, "-" * len(head)]

    def f(x: float | None, w: int = 7, p: int = 4) -> str:
        return f"{x:>{w}.{p}f}" if x is not None else f"{'—':>{w}}"

    for r in rows:
        top10 = r.get("top10_eigenvalue_max_rel_error")
        lines.append(
            f"{r['step']:>6} {r['split']:>5} {r['k']:>4} {r['magnitude_sketched']:>9.4f} "
            f"{f(r.get('magnitude_exact'))} {f(r.get('abs_diff_sketched_exact'))} "
            f"{f(r['random'])} {f(r['best'])} {f(r['chance'])} {f(r['ratio_to_chance'], 7, 2)} "
            f"{f(r['relative_error'], 7, 3)} "
            + (f"{100 * top10:>7.2f}%" if top10 is not None else f"{'—':>8}")
        )
    return "\n".join(lines)


def _print_results(results: dict, out: Path) -> None:
    model = results["model"]
    print(f"\n{results['name']}: {model['name']} with D = {model['num_params']:,} parameters")
    print(
        "Overlap of the top-k magnitude mask with the top-k Hessian eigenspace (sketched), "
        "exact where computed,\nrandom-mask mean, best mask, chance k/D, magnitude ÷ chance, "
        "a-posteriori relative error ‖H−Ĥ‖_F/‖H‖_F,\nand the max relative error of the top-10 "
        "sketched eigenvalues against exact:\n"
    )
    print(_summary_table(results))
    if results.get("reused_analyses"):
        print(f"\n(reused {results['reused_analyses']} finished analyses from {out / 'steps'})")
    print(f"\nresults: {out / 'results.json'}   figures: {out / 'figures'}/")
    print(f"total {results['seconds']:.1f} s")


def _cmd_demo(args: argparse.Namespace) -> int:
    from curvsketch.experiments.pipeline import run_study
    from curvsketch.experiments.presets import preset

    config = preset("quick" if args.quick else "demo")
    out = Path(args.out or ("demo_results/quick" if args.quick else "demo_results/full"))
    results = run_study(config, out, progress=not args.quiet)
    _print_results(results, out)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from curvsketch.experiments.config import load_config
    from curvsketch.experiments.pipeline import run_study
    from curvsketch.experiments.preflight import check_study
    from curvsketch.experiments.sweep import run_sweep

    config = load_config(args.config, data_root=args.data_root)
    out = Path(args.out or Path("results") / config.name)
    if config.sweep.widths:  # run_sweep checks every width before the first one trains
        summary = run_sweep(config, out, progress=not args.quiet)
        print(summary["table"])
        print(f"\nfigure: {summary['figure']}   results: {out / 'sweep.json'}")
        return 0
    check_study(config)  # model against data, every k against the sketch: before training
    results = run_study(config, out, progress=not args.quiet)
    _print_results(results, out)
    return 0


def _cmd_metrics_study(args: argparse.Namespace) -> int:
    from curvsketch.experiments.entry import metrics_study

    bad = [d for d in args.dims if d < 2]
    if bad:
        raise ValueError(f"--dims {' '.join(map(str, args.dims))}: every D must be >= 2")
    if args.samples < 2:
        raise ValueError(f"--samples {args.samples} must be >= 2 (for the 5-95 % bands)")
    path = metrics_study(args.out, dims=args.dims, samples=args.samples, seed=args.seed)
    print(f"figure: {path}")
    return 0


class _Parser(argparse.ArgumentParser):
    """``argparse`` whose usage errors are one ``curvsketch: error:`` line (exit status 2).

    Sub-command parsers are made with the same class, so ``measure`` and ``recover`` flags
    (registered in :mod:`curvsketch.cli.distributed`) answer the same way.
    """

    def error(self, message: str) -> NoReturn:
        print(f"curvsketch: error: {message}; see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``curvsketch`` command."""
    parser = _Parser(
        prog="curvsketch",
        description="Sketched Hessian eigendecompositions of neural networks, with error "
        "bars, and how magnitude masks align with the top eigenspaces "
        "(Fernandez et al., TMLR 2025).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from curvsketch.experiments.entry import package_version

    parser.add_argument("--version", action="version", version=f"curvsketch {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="the paper's 16x16 MNIST study on the bundled data",
        description="Train the paper's 7,030-parameter MLP on 16x16 MNIST (bundled 5k sample), "
        "compute exact and sketched (o=355, s=710) Hessian eigenpairs on 500 train and 500 "
        "test digits at steps 0, 100, 250, 500, 1000, and report how the top-k magnitude "
        "mask overlaps the top-k eigenspace.",
    )
    demo.add_argument(
        "--out", help="output directory (default demo_results/full or demo_results/quick)"
    )
    demo.add_argument(
        "--quick", action="store_true", help="300 steps, 3 analyses, sketch only (~2 min)"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser(
        "run",
        help="run a study from a TOML configuration",
        description="Run the study described by CONFIG (see configs/ for the paper's settings). "
        "A second run into the same --out reuses finished steps.",
    )
    run.add_argument("config", help="TOML file, e.g. configs/mnist16.toml")
    run.add_argument("--out", help="output directory (default results/<config name>)")
    run.add_argument("--data-root", help="folder holding a local data set (overrides data.root)")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.set_defaults(func=_cmd_run)

    ms = sub.add_parser(
        "metrics-study",
        help="the synthetic study of the Grassmann metrics (random pairs vs D and ρ)",
        description="Draw random pairs (subspace-subspace, subspace-mask, mask-mask) over "
        "dimensions D and ratios ρ = k/D and plot medians with 5-95%% bands per metric.",
    )
    ms.add_argument("--out", default="results/metrics_study", help="output directory")
    ms.add_argument("--dims", type=int, nargs="+", default=[32, 64, 128, 256], help="dimensions D")
    ms.add_argument("--samples", type=int, default=12, help="random pairs per (D, ρ)")
    ms.add_argument("--seed", type=int, default=0)
    ms.set_defaults(func=_cmd_metrics_study)

    from curvsketch.cli.distributed import add_commands
    from curvsketch.cli.spectrum import add_command as add_spectrum

    add_commands(sub)
    add_spectrum(sub)
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    """Values of command-line flags that would otherwise fail after the work they guard."""
    from curvsketch.experiments.preflight import (
        check_memory_budget,
        check_output_file,
        check_workers,
    )

    if args.command == "recover":
        check_memory_budget(getattr(args, "memory_budget", None))
        if getattr(args, "out", None):
            check_output_file(args.out)
    elif args.command == "measure":
        check_workers(getattr(args, "worker", 0), getattr(args, "of", 1))


_OS_HINTS = {
    errno.ENOSPC: "free some space or write elsewhere (another --out)",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.EROFS: "the file system is read-only: choose another folder",
    errno.EISDIR: "a folder is in the way: give a file name",
    errno.ENOTDIR: "a file is in the way where a folder is needed: choose another path",
    errno.EEXIST: "a file is in the way where a folder is needed: choose another path",
}


def _os_message(err: OSError) -> str:
    """One line for an operating-system error: the path, what went wrong, the fix."""
    where = err.filename if err.filename is not None else None
    what = err.strerror or str(err)
    line = f"{where}: {what}" if where is not None else what
    hint = _OS_HINTS.get(err.errno) if err.errno is not None else None
    return f"{line}; {hint}" if hint else line


def _error(message: object) -> int:
    text = " ".join(str(message).split()) or "unknown error"
    print(f"curvsketch: error: {text}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``curvsketch`` command with ``argv`` (default: ``sys.argv[1:]``).

    Known failures (a missing file or data folder, a bad configuration or flag, a file
    that cannot be written) print one line starting with ``curvsketch: error:`` and exit
    with status 2; nothing is trained or measured before the inputs are checked.
    """
    from curvsketch.experiments.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        _check_arguments(args)
        return args.func(args)
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as err:
        return _error(err.args[0] if isinstance(err, KeyError) and err.args else err)
    except OSError as err:
        return _error(_os_message(err))
    except pickle.UnpicklingError as err:
        # torch.load(weights_only=True) of a file that is not a tensor/state-dict file;
        # its advice to load with weights_only=False (arbitrary code) is not repeated.
        given = getattr(args, "checkpoint", None)
        what = f"--checkpoint {given}" if given else "a file given to this command"
        first = str(err).split(".")[0]
        return _error(
            f"{what} is not a readable state_dict file ({first}); pass a file written by "
            "torch.save(model.state_dict()) or a checkpoint of `curvsketch run`"
        )
    except KeyboardInterrupt:
        print(
            "\ncurvsketch: interrupted; finished steps are kept and reused on the next run",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
