"""Benchmark: peak memory, time and accuracy of out-of-core QR of a Zarr-stored tall ``Y``.

The out-of-core recovery (:mod:`curvsketch.sketch.outofcore`) needs an orthonormal ``Q`` of
the outer sketch ``Y`` (``D × o``, on disk) written back to disk. This script measures, at
``D = 2,000,000``, ``o = 200``, float32 (1.6 GB) in Zarr chunks of 100,000 rows, with
``Y = G diag(10^linspace(0, -6, o)) Vᵀ`` (``G`` Gaussian, ``V`` a random orthogonal
``o × o``; ``cond(Y) ≈ 10⁶``). The rotation ``Vᵀ`` matters: with columns merely scaled
(``--no-mix``) the indirect ``Y R⁻¹`` is column-scaling invariant and stays accurate.

* ``dask_tsqr``: ``q, r = dask.array.linalg.tsqr(da.from_zarr(Y))`` and ``da.store(q, Q)``
  computed together with ``r``, default threaded scheduler;
* ``dask_tsqr_r_indirect``: ``r = tsqr(...)[1]`` alone (the ``Q1_i`` are culled from the
  graph), then the indirect ``Q = Y R⁻¹`` block by block (``da.store``);
* ``dask_staged``: :func:`curvsketch.sketch.outofcore.tsqr_zarr` — Direct TSQR with each
  stage a Dask graph over row blocks (torch block QRs), ``Q1`` persisted to a scratch
  Zarr array, the stacked ``R`` by Dask's ``tsqr`` (``workers`` = CPU count, and 1 in
  ``dask_staged_w1``);
* ``loop_torch``: the previous sequential implementation (torch block QRs in a Python loop,
  ``Q1`` in Zarr), copied here for comparison.

Each method runs in a fresh child process with single-threaded BLAS
(``OPENBLAS_NUM_THREADS=1`` etc.: multithreaded BLAS on a shared machine gave 10x
run-to-run spread), so parallelism comes from Dask's worker threads only. ``peak_mb`` is
``ru_maxrss`` after the method minus the RSS before it (after imports), ``hwm_mb`` the
same from ``VmHWM`` reset with ``/proc/self/clear_refs``. After the timing the child
checks ``‖QᵀQ − I‖₂`` and ``‖QR − Y‖_F / ‖Y‖_F`` (accumulated in float64, block by
block). Results go to ``benchmarks/out/tsqr_memory.{json,md}`` and are printed.

Run: ``.venv/bin/python -m benchmarks.probes.tsqr_memory`` (``--dim 200000`` for a quick run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import (
    OUT_DIR,
    REPO_ROOT,
    Timer,
    maxrss_bytes,
    module_command,
    proc_status_kib,
    reset_peak_rss,
)

OUT = OUT_DIR
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
METHODS = ("dask_tsqr", "dask_tsqr_r_indirect", "dask_staged", "dask_staged_w1", "loop_torch")


def make_y(path: Path, dim: int, outer: int, rows: int, dtype: str, seed: int, mix: bool) -> None:
    """Write the ill-conditioned ``Y = G diag(s) Vᵀ`` (``V = I`` unless ``mix``) to
    ``path/Y`` block by block."""
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    y = group.create_array(
        "Y", shape=(dim, outer), chunks=(rows, outer), dtype=dtype, compressors=None
    )
    rng = np.random.default_rng(seed)
    right = np.diag(10.0 ** np.linspace(0.0, -6.0, outer))
    if mix:
        right = right @ np.linalg.qr(rng.standard_normal((outer, outer)))[0].T
    right = right.astype(dtype)
    for r0 in range(0, dim, rows):
        r1 = min(dim, r0 + rows)
        y[r0:r1, :] = rng.standard_normal((r1 - r0, outer), dtype=dtype) @ right


# ---------------------------------------------------------------------------- methods
def _new(group, name: str, shape, chunks, dtype):
    return group.create_array(
        name, shape=shape, chunks=chunks, dtype=dtype, overwrite=True, compressors=None
    )


def run_dask_tsqr(group, rows: int) -> np.ndarray:
    import dask
    import dask.array as da

    y = group["Y"]
    q, r = da.linalg.tsqr(da.from_zarr(y, chunks=(rows, y.shape[1])))
    qz = _new(group, "Q", y.shape, (rows, y.shape[1]), y.dtype)
    _, r = dask.compute(da.store(q, qz, lock=False, compute=False), r)
    return r


def run_dask_tsqr_r_indirect(group, rows: int) -> np.ndarray:
    import dask.array as da
    from scipy.linalg import solve_triangular

    y = group["Y"]
    yd = da.from_zarr(y, chunks=(rows, y.shape[1]))
    r = da.linalg.tsqr(yd)[1].compute()

    def right_solve(block: np.ndarray) -> np.ndarray:  # block R⁻¹ = (R⁻ᵀ blockᵀ)ᵀ
        return solve_triangular(r, block.T, trans="T").T.astype(block.dtype)

    qz = _new(group, "Q", y.shape, (rows, y.shape[1]), y.dtype)
    da.store(yd.map_blocks(right_solve, dtype=y.dtype), qz, lock=False)
    return r


def run_dask_staged(group, rows: int, workers: int) -> np.ndarray:
    from curvsketch.sketch.outofcore import tsqr_zarr

    y = group["Y"]
    return tsqr_zarr(y, group, rows, y.shape[1], workers=workers)


def run_loop_torch(group, rows: int) -> np.ndarray:
    """The sequential Direct TSQR that ``outofcore.direct_tsqr`` was before Dask."""
    import torch

    y = group["Y"]
    dim, outer = (int(n) for n in y.shape)
    starts = list(range(0, dim, rows))
    q1 = _new(group, "tsqr_Q1", (dim, outer), (rows, outer), y.dtype)
    rs = []
    for r0 in starts:
        r1 = min(dim, r0 + rows)
        q, r = torch.linalg.qr(torch.from_numpy(np.asarray(y[r0:r1, :])), mode="reduced")
        q1[r0:r1, :] = q.numpy()
        rs.append(r)
    q2, r = torch.linalg.qr(torch.cat(rs), mode="reduced")
    qz = _new(group, "Q", (dim, outer), (rows, outer), y.dtype)
    for i, r0 in enumerate(starts):
        r1 = min(dim, r0 + rows)
        block = torch.from_numpy(np.asarray(q1[r0:r1, :]))
        qz[r0:r1, :] = (block @ q2[i * outer : (i + 1) * outer]).numpy()
    del group["tsqr_Q1"]
    return r.numpy()


def accuracy(group, r: np.ndarray, rows: int) -> dict[str, float]:
    """``‖QᵀQ − I‖₂`` and ``‖QR − Y‖_F / ‖Y‖_F`` in float64, block by block."""
    y, q = group["Y"], group["Q"]
    dim, outer = (int(n) for n in y.shape)
    gram = np.zeros((outer, outer))
    res2 = ynorm2 = 0.0
    r64 = np.asarray(r, dtype=np.float64)
    for r0 in range(0, dim, rows):
        qb = np.asarray(q[r0 : r0 + rows, :], dtype=np.float64)
        yb = np.asarray(y[r0 : r0 + rows, :], dtype=np.float64)
        gram += qb.T @ qb
        res2 += float(np.square(qb @ r64 - yb).sum())
        ynorm2 += float(np.square(yb).sum())
    return {
        "orth": float(np.linalg.norm(gram - np.eye(outer), 2)),
        "resid": (res2 / ynorm2) ** 0.5,
        "cond_r": float(np.linalg.cond(r64)),
    }


def child(method: str, path: str, rows: int) -> dict:
    # imports before the baseline
    import dask.array  # noqa: F401
    import scipy.linalg  # noqa: F401
    import torch  # noqa: F401
    import zarr

    import curvsketch.sketch.outofcore  # noqa: F401

    group = zarr.open_group(path, mode="r+")
    rss0 = proc_status_kib("VmRSS")
    maxrss0 = maxrss_bytes() // 1024
    hwm_ok = reset_peak_rss()
    with Timer() as timer:
        if method == "dask_tsqr":
            r = run_dask_tsqr(group, rows)
        elif method == "dask_tsqr_r_indirect":
            r = run_dask_tsqr_r_indirect(group, rows)
        elif method == "dask_staged":
            r = run_dask_staged(group, rows, workers=os.cpu_count() or 1)
        elif method == "dask_staged_w1":
            r = run_dask_staged(group, rows, workers=1)
        elif method == "loop_torch":
            r = run_loop_torch(group, rows)
        else:
            raise ValueError(method)
    seconds, cpu = timer.seconds, timer.cpu_seconds
    maxrss1 = maxrss_bytes() // 1024
    hwm = proc_status_kib("VmHWM") if hwm_ok else None
    out = {
        "method": method,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_before_mb": rss0 / 1024,
        "maxrss_before_mb": maxrss0 / 1024,
        "peak_mb": (maxrss1 - rss0) / 1024,
        "hwm_mb": None if hwm is None else (hwm - rss0) / 1024,
    }
    out.update(accuracy(group, r, rows))
    del group["Q"]
    return out


def table(rows: list[dict], meta: dict) -> str:
    lines = [
        f"TSQR of a Zarr-stored {meta['dtype']} Y, D = {meta['dim']:,}, o = {meta['outer']}, "
        f"{meta['y_gb']:.2f} GB, row chunks {meta['rows']:,}, Y = G diag(10^linspace(0,-6)) "
        f"{'Vᵀ' if meta['mix'] else '(no rotation)'}, cond(R) = {meta['cond']:.1e}; "
        f"{meta['cpus']} CPUs, single-threaded BLAS. Peak = ru_maxrss after − RSS before.",
        "",
        "| method | peak RSS increase (MB) | VmHWM increase (MB) | seconds "
        "| CPU s | ‖QᵀQ−I‖₂ | ‖QR−Y‖/‖Y‖ |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        hwm = "" if r.get("hwm_mb") is None else f"{r['hwm_mb']:.0f}"
        lines.append(
            f"| {r['method']} | {r['peak_mb']:.0f} | {hwm} | {r['seconds']:.1f} "
            f"| {r['cpu_seconds']:.1f} | {r['orth']:.1e} | {r['resid']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=int, default=2_000_000)
    p.add_argument("--outer", type=int, default=200)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--no-mix", dest="mix", action="store_false", help="Y = G diag(s)")
    p.add_argument("--dir", default=None, help="parent of the temporary store")
    p.add_argument("--tag", default="tsqr_memory", help="name of the output files")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.path, args.rows)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="tsqr-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        make_y(tmp / "s", args.dim, args.outer, args.rows, args.dtype, args.seed, args.mix)
        print(f"wrote Y in {time.perf_counter() - t0:.1f} s", flush=True)
        results = []
        env = {**os.environ, **dict.fromkeys(BLAS_THREADS, "1")}
        for method in args.methods.split(","):
            out = subprocess.run(
                module_command(
                    "benchmarks.probes.tsqr_memory",
                    "--child",
                    method,
                    "--path",
                    str(tmp.resolve() / "s"),
                    "--rows",
                    str(args.rows),
                ),
                capture_output=True,
                text=True,
                check=False,
                env=env,
                cwd=REPO_ROOT,
            )
            if out.returncode != 0:
                print(f"{method} failed:\n{out.stderr[-3000:]}", flush=True)
                continue
            res = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(res), flush=True)
            results.append(res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta = {
        "dim": args.dim,
        "outer": args.outer,
        "rows": args.rows,
        "dtype": args.dtype,
        "y_gb": args.dim * args.outer * np.dtype(args.dtype).itemsize / 1e9,
        "cpus": os.cpu_count(),
        "seed": args.seed,
        "mix": args.mix,
        "cond": results[0]["cond_r"] if results else float("nan"),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.tag}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    md = table(results, meta)
    (OUT / f"{args.tag}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
