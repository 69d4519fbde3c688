"""Trace estimators on the ~100k MLP (problem ``b``), part of ``estimators.py``.

No dense Hessian exists at D = 102,840 (it would be 42 GB in float32), so the reference
trace is itself an estimate, made once and cached, with far more products than any
estimator under test gets: the top ``--large-ref-k`` Ritz pairs of a ``krylov`` seigh
(their Rayleigh–Ritz values are exact ``uᵀHu``), plus Hutchinson with
``--large-ref-probes`` Rademacher probes on the deflated remainder ``(I − UUᵀ)H(I − UUᵀ)``
(``curvsketch.trace(..., deflate=...)``), whose standard error is reported beside every
error so a reader can see that it is small against them.

Errors of each method (median and quartiles over ``--large-seeds`` seeds) are measured on
the real operator (curvsketch ``HessianOperator``, float32, 500 Hessian samples): every
estimator (curvsketch, curvlinops, PyHessian's Hutchinson loop) gets the same operator
object. The Hutchinson-type methods draw their probes one by one, so one run of
``max(N)`` probes per seed gives every smaller ``N`` as a prefix (PyHessian: the mean of its
first ``N`` samples; curvsketch: probes addressed by ``(seed, index)``, the same vectors as a
call with ``N``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import curvsketch
from benchmarks.harness import log
from benchmarks.suite.problems import _hessian_data, _trained_model, spec_for
from curvsketch import HessianOperator
from curvsketch.sketch.noise import RademacherNoise


def _reference(op: Any, cache: Path, key: str, k: int, probes: int) -> dict[str, Any]:
    path = cache / f"{key}_estimators_trace_reference_k{k}_p{probes}.pt"
    if path.exists():
        log(f"large reference from {path}")
        return torch.load(path, weights_only=False)
    t0 = time.perf_counter()
    res = curvsketch.seigh(op, k, 2 * k, recovery="krylov", seed=12345, progress=False)
    t1 = time.perf_counter()
    est = curvsketch.trace(op, probes, method="hutchinson", seed=54321, deflate=res)
    t2 = time.perf_counter()
    ref = {
        "trace": est.value,
        "standard_error": est.standard_error,
        "deflated": k,
        "krylov_products": res.num_products,
        "hutchinson_products": est.num_products,
        "ritz_sum": float(res.ritz_values.double().sum()),
        "top_eigenvalues": res.eigenvalues[:10].double().tolist(),
        "seconds": {"krylov": t1 - t0, "hutchinson": t2 - t1},
    }
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(ref, path)
    return ref


def run_large(args: Any, quartiles: Any, pyhessian_obj: Any) -> dict[str, Any]:
    """Trace errors on problem ``b``; returns the payload section ``large``.

    ``pyhessian_obj(model, X, y, dense=fn)`` is PyHessian's ``hessian`` with its product
    replaced by ``fn(flat_v)`` (``estimators.pyhessian_obj``), its algorithm unchanged.
    """
    import curvlinops

    spec = spec_for("b", False)
    cache = args.out / "problems"
    model = _trained_model(spec, cache).float()
    for p in model.parameters():
        p.grad = None
    _, X, y = _hessian_data(spec)
    op = HessianOperator(model, nn.functional.cross_entropy, (X.float(), y), engine="vmap")
    D = int(op.shape[0])
    log(f"[b] D={D}: reference (krylov k={args.large_ref_k} + {args.large_ref_probes} probes)")
    ref = _reference(op, cache, spec.cache_key(), args.large_ref_k, args.large_ref_probes)
    exact = ref["trace"]
    log(f"[b] reference trace {exact:.6g} ± {ref['standard_error']:.2g}")
    ns, seeds = list(args.products), args.large_seeds
    nmax = max(ns)
    out: dict[str, Any] = {
        "title": spec.title.replace("reference: eigsh top-1000", "reference: krylov + deflation"),
        "D": D,
        "samples": int(X.shape[0]),
        "dtype": "float32",
        "reference": ref,
        "seeds": seeds,
        "trace": {},
    }

    def record(name: str, errs_by_n: dict[int, list[float]], secs: dict[int, float]) -> None:
        out["trace"][name] = [
            {
                "products": n,
                "rel_error": quartiles(errs_by_n[n]),
                "errors": errs_by_n[n],
                "seconds_seed0": secs.get(n),
            }
            for n in ns
        ]
        med = ", ".join(f"N={n}: {np.median(errs_by_n[n]):.3e}" for n in ns)
        log(f"[b] trace {name:28s} {med}")

    def rel(v: float) -> float:
        return abs(v - exact) / abs(exact)

    # block methods: one call per (seed, N)
    block = {
        "curvsketch hutch++": lambda n, s: curvsketch.trace(op, n, method="hutch++", seed=s).value,
        "curvsketch xtrace": lambda n, s: curvsketch.trace(op, n, method="xtrace", seed=s).value,
        "curvlinops hutchpp_trace": lambda n, s: float(curvlinops.hutchpp_trace(op, n)),
        "curvlinops xtrace": lambda n, s: float(curvlinops.xtrace(op, n)),
    }
    for name, fn in block.items():
        errs: dict[int, list[float]] = {n: [] for n in ns}
        secs: dict[int, float] = {}
        for s in range(seeds):
            for n in ns:
                torch.manual_seed(s)  # curvlinops draws from torch's global generator
                t0 = time.perf_counter()
                errs[n].append(rel(fn(n, s)))
                if s == 0:
                    secs[n] = time.perf_counter() - t0
        record(name, errs, secs)

    # Hutchinson-type: one run of max(N) probes per seed, prefixes for smaller N
    ph = pyhessian_obj(model, X, y, dense=lambda flat: (op @ flat[:, None])[:, 0])
    errs_ours: dict[int, list[float]] = {n: [] for n in ns}
    errs_ph: dict[int, list[float]] = {n: [] for n in ns}
    for s in range(seeds):
        probes = RademacherNoise(nmax, D, s, "trace.hutchinson")
        z = probes.columns(0, nmax, dtype=op.dtype, device=op.device)
        ours = (z * (op @ z)).sum(0).double()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            theirs = torch.tensor(ph.trace(maxIter=nmax, tol=0.0), dtype=torch.float64)
        for n in ns:
            errs_ours[n].append(rel(float(ours[:n].mean())))
            errs_ph[n].append(rel(float(theirs[:n].mean())))
    call = curvsketch.trace(op, ns[0], method="hutchinson", seed=0).value
    out["hutchinson_prefix_check"] = {
        "call_rel_error": rel(call),
        "prefix_rel_error": errs_ours[ns[0]][0],
    }
    record("curvsketch hutchinson", errs_ours, {})
    record("PyHessian trace (maxIter=N, tol=0)", errs_ph, {})
    return out
