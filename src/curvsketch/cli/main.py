"""Entry point of the ``curvsketch`` command: parses arguments, calls experiments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from curvsketch import __version__


def _cmd_demo(args: argparse.Namespace) -> int:
    from curvsketch.experiments.exact_demo import run_exact_demo

    res = run_exact_demo(progress=not args.quiet)
    print("\ncurvsketch demo: paper MLP (7,030 parameters) on 16x16 MNIST, exact Hessian on")
    print("500 class-balanced held-out digits; top-10 eigenvalues by |λ|\n")
    for step in res.steps:
        vals = " ".join(f"{v:8.4f}" for v in res.top_eigenvalues[step])
        print(f"step {step:5d}  test acc {res.test_accuracy[step]:.3f}  λ: {vals}")
    print(f"\ntrain {res.seconds['train']:.1f} s, Hessians {res.seconds['hessians']:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``curvsketch`` command."""
    parser = argparse.ArgumentParser(
        prog="curvsketch",
        description="Sketched Hessian eigendecompositions of neural networks, with error bars, "
        "and how magnitude masks align with the top eigenspaces.",
    )
    parser.add_argument("--version", action="version", version=f"curvsketch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="train the paper's MNIST MLP and report its top Hessian eigenvalues"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``curvsketch`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
