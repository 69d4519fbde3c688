"""Benchmark: the magnitude-mask overlap curve from eigenvectors stored ON DISK.

A sketched eigendecomposition returns eigenvectors ``U = Q V`` with ``Q`` a tall D×o matrix
that need not fit in memory (ImageNet/ResNet-18 in Fernandez et al., TMLR 2025: ≈ 70 GB).
``curvsketch.analysis.overlap_curve`` needs only the o rows of ``U`` at the o largest-|θ|
parameters (§2 of the paper), so it should run in seconds and in little memory however big
``Q`` is. This script checks that at D = 2·10⁶, o = 1500, float32 (a 12 GB ``Q``):

1. writes ``Q`` to a raw float32 file under ``--dir`` block by block (never 12 GB in RAM)
   and drops it from the page cache (``posix_fadvise(DONTNEED)``) so reads hit the disk.
   ``Q`` is exactly orthonormal: ``Q = m^{-1/2} [P_1 S_1 W_{j_1}; …; P_m S_m W_{j_m}]`` with
   ``W_j`` a small pool of random b×o matrices with orthonormal columns, ``P_i`` random row
   permutations and ``S_i`` random row signs (so ``QᵀQ = I``);
2. in a fresh child process (so that its peak RSS, ``VmHWM``, measures only this work),
   memory-maps the file (``mmap`` + ``numpy.frombuffer``, i.e. a read-only numpy memmap)
   in a small factored object with ``.shape`` and ``.rows(idx) = Q[sorted idx] @ V``
   (sorted for sequential reads, then un-permuted), and times ``overlap_curve(θ, U)`` and
   ``random_overlap_curve(U, n_draws=3)``; once with ``madvise(MADV_RANDOM)`` (the
   reported numbers) and once without (``without_madvise_random``: read-ahead on every
   fault makes the scattered gather read gigabytes);
3. writes the numbers to ``benchmarks/out/overlap_ooc.json``, prints them and deletes the
   file (also on failure, unless ``--keep``).

Run: ``.venv/bin/python -m benchmarks.probes.overlap_ooc`` (defaults as above; ``--D``/``--o`` for
a quick small run).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import (
    OUT_DIR,
    REPO_ROOT,
    module_command,
    proc_status_kib,
    reset_peak_rss,
    write_json,
)
from curvsketch.analysis import overlap_curve, random_overlap_curve


def drop_from_page_cache(fd: int) -> None:
    os.fdatasync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


class MemmapFactored:
    """Eigenvectors ``Q @ V`` with ``Q`` a D×o float32 memory-mapped file: rows on demand.

    ``advice="random"`` calls ``madvise(MADV_RANDOM)`` on the mapping. Without it every
    page fault triggers the device's read-ahead (8 MiB on the benchmark machine), so a
    gather of 1500 scattered 6 KB rows reads gigabytes; with it, only the pages touched.
    """

    def __init__(self, path: Path, D: int, o: int, V: torch.Tensor, advice: str = "random") -> None:
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if advice == "random":
            self._map.madvise(mmap.MADV_RANDOM)
        self.Q = np.frombuffer(self._map, dtype=np.float32).reshape(D, o)
        self.V = V
        self.shape = (D, int(V.shape[1]))
        self.rows_read = 0

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        idx = index.cpu().numpy()
        order = np.argsort(idx, kind="stable")
        block = torch.from_numpy(np.ascontiguousarray(self.Q[idx[order]]))  # sorted reads
        out = torch.empty(len(idx), self.shape[1], dtype=block.dtype)
        out[torch.from_numpy(order)] = block @ self.V
        self.rows_read += len(idx)
        return out


def write_q(path: Path, D: int, o: int, block: int, pool: int, seed: int) -> float:
    """Write the orthonormal ``Q`` block by block; return the seconds taken."""
    if D % block or block < o:
        raise ValueError(f"need block ≥ o and D % block == 0, got D={D}, block={block}, o={o}")
    m = D // block
    rng = np.random.default_rng(seed)
    W = [
        (np.linalg.qr(rng.standard_normal((block, o))).Q / np.sqrt(m)).astype(np.float32)
        for _ in range(pool)
    ]
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = 0
        for i in range(m):
            rows = W[int(rng.integers(pool))][rng.permutation(block)]
            rows *= rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(block, 1))
            assert rows.dtype == np.float32
            os.write(fd, rows.tobytes())
            written += rows.nbytes
            if written >= 2**30 or i == m - 1:  # keep the page cache small
                drop_from_page_cache(fd)
                written = 0
            if i % max(1, m // 10) == 0:
                print(f"  wrote {i + 1}/{m} blocks ({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def measure(args: argparse.Namespace) -> dict:
    """Child process: time the overlap curves on the on-disk ``Q`` and record peak RSS."""
    torch.set_num_threads(1)
    data = Path(args.dir)
    V = torch.from_numpy(np.load(data / "V.npy"))
    theta = torch.from_numpy(np.load(data / "theta.npy"))
    U = MemmapFactored(data / "Q.f32", args.D, args.o, V, advice=args.advice)
    fd = os.open(data / "Q.f32", os.O_RDONLY)
    drop_from_page_cache(fd)  # cold cache: reads go to the disk
    os.close(fd)
    rss_before = proc_status_kib("VmRSS")
    hwm_reset = reset_peak_rss()
    t0 = time.perf_counter()
    curve = overlap_curve(theta, U)
    t_curve = time.perf_counter() - t0
    hwm_curve = proc_status_kib("VmHWM")
    rows_curve = U.rows_read
    t0 = time.perf_counter()
    rand = random_overlap_curve(U, n_draws=3, seed=0)
    t_rand = time.perf_counter() - t0
    ks = [k for k in (1, 10, 100, 1000, args.o) if k <= args.o]
    return {
        "overlap_curve_s": t_curve,
        "random_overlap_curve_3_draws_s": t_rand,
        "rss_before_call_mib": rss_before / 1024,
        "peak_rss_during_overlap_curve_mib": hwm_curve / 1024,
        "peak_rss_increase_mib": (hwm_curve - rss_before) / 1024,
        "peak_rss_after_random_curve_mib": proc_status_kib("VmHWM") / 1024,
        "peak_rss_was_reset_before_call": hwm_reset,
        "rows_read_by_overlap_curve": rows_curve,
        "rows_read_total": U.rows_read,
        "curve_at_k": {str(k): float(curve[k - 1]) for k in ks},
        "random_mean_at_k": {str(k): float(rand.mean[k - 1]) for k in ks},
        "chance_k_over_D": {str(k): k / args.D for k in ks},
        "curve_in_unit_interval": bool(((curve >= 0) & (curve <= 1 + 1e-5)).all()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--D", type=int, default=2_000_000)
    parser.add_argument("--o", type=int, default=1500)
    parser.add_argument("--block", type=int, default=2000, help="rows per written block")
    parser.add_argument("--pool", type=int, default=8, help="distinct orthonormal blocks")
    parser.add_argument("--dir", default="/tmp/curvsketch_overlap_ooc")
    parser.add_argument("--out", default=str(OUT_DIR / "overlap_ooc.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="do not delete the data files")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--advice", default="random", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return

    data = Path(args.dir)
    data.mkdir(parents=True, exist_ok=True)
    qpath = data / "Q.f32"
    gib = args.D * args.o * 4 / 2**30
    print(f"writing Q: D={args.D}, o={args.o}, float32, {gib:.1f} GiB -> {qpath}", flush=True)
    try:
        t_write = write_q(qpath, args.D, args.o, args.block, args.pool, args.seed)
        rng = np.random.default_rng(args.seed + 1)
        V = np.linalg.qr(rng.standard_normal((args.o, args.o))).Q.astype(np.float32)
        np.save(data / "V.npy", V)
        np.save(data / "theta.npy", rng.standard_normal(args.D, dtype=np.float32))
        cmd = module_command("benchmarks.probes.overlap_ooc", "--measure", "--D", str(args.D))
        cmd += ["--o", str(args.o), "--dir", str(data.resolve())]
        runs = {}
        for advice in ("random", "normal"):  # each in a fresh process, cold page cache
            print(f"measuring (madvise: {advice}) ...", flush=True)
            child = subprocess.run(
                [*cmd, "--advice", advice],
                check=True,
                capture_output=True,
                text=True,
                cwd=REPO_ROOT,
            )
            runs[advice] = json.loads(child.stdout.strip().splitlines()[-1])
        result = {
            "D": args.D,
            "o": args.o,
            "dtype": "float32",
            "q_file_gib": qpath.stat().st_size / 2**30,
            "write_q_s": t_write,
            "torch": torch.__version__,
            "cpu_threads": 1,
            **runs["random"],
            "without_madvise_random": {
                key: runs["normal"][key]
                for key in (
                    "overlap_curve_s",
                    "random_overlap_curve_3_draws_s",
                    "peak_rss_during_overlap_curve_mib",
                    "peak_rss_increase_mib",
                )
            },
        }
    finally:
        if not args.keep:
            for name in ("Q.f32", "V.npy", "theta.npy"):
                (data / name).unlink(missing_ok=True)
            if data.exists() and not any(data.iterdir()):
                data.rmdir()
    out = Path(args.out)
    write_json(out, result, indent=2)
    print(json.dumps(result, indent=2))
    print(f"wrote {out}; data files {'kept' if args.keep else 'deleted'}")


if __name__ == "__main__":
    main()
