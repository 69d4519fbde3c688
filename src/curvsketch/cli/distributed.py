"""``curvsketch measure`` and ``curvsketch recover``: one sketch split over processes.

Each ``measure`` process builds the Hessian (or GGN) of a study configuration (model,
Hessian samples and sketch settings from the TOML that ``curvsketch run`` reads), computes
its share of the blocks (``block % n == i``) into a shared store and exits; ``recover``
then assembles the eigendecomposition from the complete store. Re-running a ``measure``
resumes it. ``[sketch] recovery``: ``"singlepass"`` (blocks split over the workers),
``"hmt"`` (pass by pass, as job arrays: the workers of one pass split its blocks, ``--pass
K`` or the next pass it can; a pass needs the previous one complete) or ``"krylov"``
(sequential: one ``measure`` process, resumable). Register with :func:`add_commands`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_commands", "build_operator"]


def _check_training_folder(config: Any, checkpoint: Path) -> None:
    """Refuse a checkpoint of ``curvsketch run`` whose run had another model or data setting."""
    import json

    from curvsketch.experiments.checkpoints import LOG_FILE, describe_changes
    from curvsketch.experiments.pipeline import train_identity

    log = checkpoint.parent / LOG_FILE
    try:
        saved = json.loads(log.read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # a plain state dict, or no readable log beside it: nothing to compare
    now = json.loads(json.dumps(train_identity(config), default=str))  # as saved
    changes = {k: (saved[k], v) for k, v in now.items() if k in saved and saved[k] != v}
    if changes:
        raise ValueError(
            f"--checkpoint {checkpoint} was trained with other settings than {config.name!r} "
            f"({describe_changes(changes)}); pass the configuration it was trained with"
        )


def build_operator(config: Any, split: str = "train", checkpoint: str | None = None) -> Any:
    """The curvature operator of ``config`` on its class-balanced ``split`` samples.

    Args:
        config: a :class:`curvsketch.experiments.config.StudyConfig`.
        split: ``"train"`` or ``"test"``.
        checkpoint: optional file with the trained model: a checkpoint that ``curvsketch
            run`` wrote (``OUT/checkpoints/step_XXXXXXXX.pt``, checked against the
            ``train_log.json`` beside it) or a plain ``state_dict`` (``torch.save``);
            default: the untrained model of ``config.model`` (its seed fixes it).

    Raises:
        FileNotFoundError: no such checkpoint file.
        ValueError: a bad split, or a checkpoint that is unreadable, was trained with
            another model or data configuration, or does not fit the model.
    """
    from pathlib import Path

    from curvsketch.experiments.checkpoints import load_checkpoint
    from curvsketch.experiments.models import build_model
    from curvsketch.experiments.pipeline import load_study_data
    from curvsketch.experiments.study_operator import hessian_samples, study_operator

    if split not in ("train", "test"):
        raise ValueError(f"--split must be 'train' or 'test', got {split!r}")
    state = None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        _check_training_folder(config, Path(checkpoint))
    train, test, _ = load_study_data(config)
    data = train if split == "train" else test
    model = build_model(config.model.name, seed=config.model.seed, **config.model.kwargs)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            detail = " ".join(str(err).split())
            raise ValueError(
                f"--checkpoint {checkpoint} does not fit the model of the configuration "
                f"(model.name = {config.model.name!r}, model.kwargs = {config.model.kwargs}): "
                f"{detail[:300]}; pass the configuration it was trained with"
            ) from None
    return study_operator(config, model, hessian_samples(config, data))


def _load(args: argparse.Namespace) -> Any:
    from curvsketch.experiments.config import load_config
    from curvsketch.experiments.preflight import check_study

    config = load_config(args.config, data_root=args.data_root or None)
    from curvsketch.experiments.stored_sketch import STORED_RECOVERIES

    if config.sketch.recovery not in STORED_RECOVERIES:
        raise ValueError(
            f"{args.config}: sketch.recovery = {config.sketch.recovery!r}; stored "
            f"measurements support {', '.join(map(repr, STORED_RECOVERIES))}"
        )
    check_study(config, analysis=False)
    return config


def _cmd_measure(args: argparse.Namespace) -> int:
    from curvsketch.experiments.stored_sketch import measure_share, store_progress

    config = _load(args)
    if args.pass_ is not None and config.sketch.recovery != "hmt":
        raise ValueError(f"--pass is for sketch.recovery = 'hmt', not {config.sketch.recovery!r}")
    op = build_operator(config, args.split, args.checkpoint)
    st = measure_share(
        op,
        config.sketch,
        args.store,
        worker=args.worker,
        num_workers=args.of,
        passes=None if args.pass_ is None else [args.pass_],
        progress=not args.quiet,
    )
    done, total, detail = store_progress(st)
    print(
        f"worker {args.worker}/{args.of}: done; store {args.store} has {done}/{total} blocks"
        + (f" ({detail})" if detail else "")
        + (" (complete: run `curvsketch recover`)" if done == total else "")
    )
    return 0


def _cmd_recover(args: argparse.Namespace) -> int:
    import torch

    from curvsketch.experiments.preflight import check_output_file
    from curvsketch.experiments.run_files import atomic_write
    from curvsketch.experiments.stored_sketch import recover_store

    out = check_output_file(args.out) if args.out else None  # before the work
    result = recover_store(args.store, memory_budget=args.memory_budget)
    fix = f"free space or pass another --out; the store {args.store} is complete, rerun recover"
    if not isinstance(result.Q, torch.Tensor):
        print(f"eigenvectors stay on disk: {args.store}/eigenvectors (out-of-core recovery)")
        if out is not None:
            eigenvalues = {"eigenvalues": result.eigenvalues}
            atomic_write(out, lambda p: torch.save(eigenvalues, p), fix)
    elif out is not None:
        atomic_write(out, result.save, fix)
    print(result)
    print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()))
    return 0


def add_commands(subparsers: Any) -> None:
    """Register ``measure`` and ``recover`` on an ``argparse`` subparsers object."""
    m = subparsers.add_parser(
        "measure",
        help="measure one worker's share of a sketch into a store",
        description="Build the Hessian of CONFIG (its model, class-balanced Hessian samples "
        "and sketch settings) and compute the blocks b with b % OF == WORKER that the store "
        "still lacks. Run one process per worker (any machines sharing the store's file "
        "system), then `curvsketch recover --store STORE`. recovery = 'hmt': pass by pass "
        "(each pass after the previous one is complete; --pass K, or the next pass); "
        "recovery = 'krylov': one process (--of 1), resumable.",
    )
    m.add_argument("config", help="TOML study configuration, e.g. configs/mnist16.toml")
    m.add_argument("--store", required=True, help="store directory (shared by all workers)")
    m.add_argument("--worker", type=int, default=0, help="this worker's index (default 0)")
    m.add_argument("--of", type=int, default=1, help="number of workers (default 1)")
    m.add_argument(
        "--pass",
        dest="pass_",
        type=int,
        help="recovery = 'hmt': measure this pass only (0 = range finder, then the power "
        "iterations and the Rayleigh-Ritz pass); default: every pass it can",
    )
    m.add_argument("--split", default="train", help="Hessian samples: train or test")
    m.add_argument(
        "--checkpoint",
        help="trained model: a checkpoint of `curvsketch run` (OUT/checkpoints/step_*.pt) "
        "or a plain state_dict file (default: the untrained model)",
    )
    m.add_argument("--data-root", help="folder holding a local data set (overrides data.root)")
    m.add_argument("--quiet", action="store_true", help="no progress output")
    m.set_defaults(func=_cmd_measure)

    r = subparsers.add_parser(
        "recover",
        help="eigendecomposition from a complete measurement store",
        description="Recovery from STORE (single pass: QR, core solve, eigenvectors; hmt: "
        "Rayleigh-Ritz of the last pass; krylov: Rayleigh-Ritz of the stored basis).",
    )
    r.add_argument("--store", required=True, help="store directory filled by `measure`")
    r.add_argument("--out", help="write the EighResult here (torch.save)")
    r.add_argument(
        "--memory-budget", type=int, help="bytes; above it QR and eigenvectors run out of core"
    )
    r.set_defaults(func=_cmd_recover)
