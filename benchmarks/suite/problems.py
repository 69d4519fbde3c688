"""The two Hessian problems of the comparison suite, built deterministically and cached.

(a) ``a``: the paper's 7,030-parameter MLP (``paper_mlp``) trained 1000 SGD steps (lr 0.3,
    batch 500) on 16x16 MNIST (``mnist16``, bundled 5k sample); the loss Hessian on 500
    class-balanced held-out digits (as ``setting()`` in ``benchmarks/probes/seigh_mnist.py``),
    float64. Reference: the dense Hessian and its full ``eigh``; the top ``ref_k`` pairs
    are kept.
(b) ``b``: ``scaled_mlp(130)`` (102,840 parameters, the ~100k MLP of
    ``benchmarks/probes/hvp_engines.py``) trained the same way; Hessian on the same 500
    held-out digits, float32 products. Reference: the top ``ref_k`` (1000) eigenpairs by
    scipy ``eigsh`` (ARPACK) at a tight tolerance on a float64 copy of the operator, with
    the residual of every pair checked.

Everything expensive (trained weights, the reference eigenpairs, the engine choice) is
cached under ``<out>/problems/`` keyed by a hash of the settings, so the other scripts of
the suite load a problem in seconds. ``--quick`` uses tiny stand-ins of both problems
(narrower MLPs, 300 steps, a 100-pair reference) so that the whole suite runs in minutes.

The operator cost table (seconds per vector of every curvsketch engine, of curvlinops'
``HessianLinearOperator``, of hessian-eigenthings' and PyHessian's own HVPs, and of one
gradient, all on the same model and data) is written to ``<out>/problems.json``; it shows
what the solvers pay per product, independently of how many products they need.

Usage:
    python -m benchmarks.suite.problems [--quick] [--out benchmarks/out] [--problems a b]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.harness import OUT_DIR, log, machine, run_info, set_threads, write_json
from benchmarks.suite.methods import Target
from curvsketch import HessianOperator, dense_matrix
from curvsketch.experiments.data import balanced_subset, mnist16
from curvsketch.experiments.measure_step import exact_top_eigenpairs
from curvsketch.experiments.models import count_parameters, scaled_mlp
from curvsketch.experiments.training import train
from curvsketch.operators import engines_for

#: Vectors per block for block products (curvsketch's default block size).
BLOCK = 64


# ------------------------------------------------------------------------ problems


@dataclass(frozen=True)
class ProblemSpec:
    """Everything that determines a problem (and its cache key)."""

    key: str
    title: str
    width: int
    steps: int
    dtype: str  # dtype of the operator products the methods see
    reference: str  # "dense" (full eigh) or "eigsh"
    ref_k: int  # eigenpairs kept in the reference
    ref_tol: float = 0.0  # eigsh tolerance (reference "eigsh" only)
    ref_dtype: str = "float64"  # dtype of the reference solve
    lr: float = 0.3
    batch_size: int = 500
    hessian_per_class: int = 50  # 50 x 10 classes = 500 held-out digits
    seed: int = 0

    def cache_key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return f"{self.key}_{hashlib.sha256(blob).hexdigest()[:12]}"


SPECS = {
    "a": ProblemSpec(
        "a",
        "(a) paper MLP, D = 7,030, float64, reference: dense eigh",
        width=20,
        steps=1000,
        dtype="float64",
        reference="dense",
        ref_k=1000,
    ),
    "b": ProblemSpec(
        "b",
        "(b) MLP width 130, D = 102,840, float32, reference: eigsh top-1000",
        width=130,
        steps=1000,
        dtype="float32",
        reference="eigsh",
        ref_k=1000,
        ref_tol=1e-8,
    ),
}
QUICK_SPECS = {
    "a": ProblemSpec(
        "a",
        "(a, quick stand-in) MLP width 12, D = 3,838, float64, reference: dense eigh",
        width=12,
        steps=300,
        dtype="float64",
        reference="dense",
        ref_k=300,
    ),
    "b": ProblemSpec(
        "b",
        "(b, quick stand-in) MLP width 40, D = 17,250, float32, reference: eigsh top-100",
        width=40,
        steps=300,
        dtype="float32",
        reference="eigsh",
        ref_k=100,
        ref_tol=1e-8,
    ),
}


def spec_for(key: str, quick: bool) -> ProblemSpec:
    specs = QUICK_SPECS if quick else SPECS
    if key not in specs:
        raise SystemExit(f"unknown problem {key!r}; known: {', '.join(specs)}")
    return specs[key]


@dataclass
class Problem:
    """A trained model, its Hessian data and operators, θ, and the reference eigenpairs."""

    spec: ProblemSpec
    model: nn.Module
    X: torch.Tensor
    y: torch.Tensor
    op_block: HessianOperator  # engine fastest on blocks of BLOCK vectors
    op_single: HessianOperator  # engine fastest on one vector at a time
    theta: torch.Tensor
    ref_values: torch.Tensor  # (K,), sorted by |λ| descending, signs kept
    ref_vectors: torch.Tensor  # (D, K)
    ref_info: dict[str, Any]
    engines: dict[str, str]
    op_costs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.theta.numel())

    @property
    def dtype(self) -> torch.dtype:
        return self.op_block.dtype

    def make_op(self, engine: str, model: nn.Module | None = None) -> HessianOperator:
        """A fresh curvsketch Hessian operator on this problem's data."""
        m = self.model if model is None else model
        X = self.X.to(next(m.parameters()).dtype)
        return HessianOperator(m, nn.functional.cross_entropy, (X, self.y), engine=engine)

    def curvlinops_op(self) -> Any:
        """curvlinops 3.x ``HessianLinearOperator`` on the same model, data and loss."""
        from curvlinops import HessianLinearOperator

        params = [p for p in self.model.parameters() if p.requires_grad]
        return HessianLinearOperator(
            self.model, nn.CrossEntropyLoss(), params, [(self.X, self.y)], check_deterministic=False
        )

    def target(self) -> Target:
        """The operators and parameter layout the methods of ``methods.py`` run on."""
        return Target(
            op_block=self.op_block,
            op_single=self.op_single,
            params=[p for p in self.model.parameters() if p.requires_grad],
            model=self.model,
            curvlinops=self.curvlinops_op,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "key": self.spec.key,
            "title": self.spec.title,
            "spec": asdict(self.spec),
            "D": self.dim,
            "samples": int(self.X.shape[0]),
            "dtype": str(self.dtype).replace("torch.", ""),
            "engines": self.engines,
            "reference": self.ref_info,
            "top10_reference": self.ref_values[:10].tolist(),
            "operator_costs": self.op_costs,
        }


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def _hessian_data(spec: ProblemSpec) -> tuple[Any, torch.Tensor, torch.Tensor]:
    data = mnist16()
    idx = balanced_subset(data.test.targets, spec.hessian_per_class, seed=spec.seed)
    return data, data.test.inputs[idx], data.test.targets[idx]


def _trained_model(spec: ProblemSpec, cache: Path) -> nn.Module:
    path = cache / f"{spec.cache_key()}_model.pt"
    model = scaled_mlp(spec.width, seed=spec.seed)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        log(f"[{spec.key}] trained weights from {path}")
    else:
        data = mnist16()
        t0 = time.perf_counter()
        log(f"[{spec.key}] training D={count_parameters(model):,} for {spec.steps} SGD steps")
        train(
            model,
            data.train,
            steps=spec.steps,
            lr=spec.lr,
            batch_size=spec.batch_size,
            seed=spec.seed,
            progress=False,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
        log(f"[{spec.key}] trained in {time.perf_counter() - t0:.1f} s -> {path}")
    return model.eval()


def operator_costs(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, repeats: int
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Seconds per vector of every HVP implementation on one model and data, side by side.

    Every implementation is warmed up once, then all are timed in turn, ``repeats`` rounds
    interleaved, and the fastest round of each is kept: on a shared machine the minimum is
    the estimate least disturbed by other jobs, and interleaving exposes all of them to the
    same disturbances. Returns the rows and the curvsketch engines fastest on one vector
    and on a block of ``BLOCK``.
    """
    dim = count_parameters(model)
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(dim, BLOCK, generator=gen, dtype=torch.float64).to(dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    calls: dict[tuple[str, int], Any] = {}

    def gradient() -> None:
        torch.autograd.grad(nn.functional.cross_entropy(model(X), y), params)

    calls[("one gradient (reference cost)", 1)] = gradient
    for engine in engines_for("hessian"):
        op = HessianOperator(
            model, nn.functional.cross_entropy, (X, y), engine=engine, check_determinism=False
        )
        for block in (1, BLOCK):
            calls[(f"curvsketch:{engine}", block)] = lambda op=op, b=block: op @ V[:, :b]
    try:
        from curvlinops import HessianLinearOperator

        lop = HessianLinearOperator(
            model, nn.CrossEntropyLoss(), params, [(X, y)], check_deterministic=False
        )
        for block in (1, BLOCK):
            calls[("curvlinops HessianLinearOperator", block)] = lambda b=block: lop @ V[:, :b]
    except ImportError:
        log("    curvlinops not importable (make bench-env)")
    try:
        import hessian_eigenthings as he

        heop = he.HessianOperator(
            model, [(X, y)], lambda m, batch: nn.functional.cross_entropy(m(batch[0]), batch[1])
        )
        calls[("hessian-eigenthings HessianOperator.matvec", 1)] = lambda: heop.matvec(V[:, 0])
    except ImportError:
        log("    hessian-eigenthings not importable (make bench-env)")
    try:
        from pyhessian.utils import hessian_vector_product

        # PyHessian's single-batch path: the gradient graph is built once and reused, one
        # backward per product (its `data=` mode; the suite runs its power iteration on
        # the shared curvsketch operator instead, see methods.py).
        grads = torch.autograd.grad(
            nn.functional.cross_entropy(model(X), y), params, create_graph=True
        )
        sizes = [p.numel() for p in params]

        def ph_hvp() -> None:
            v = [c.view_as(p) for c, p in zip(V[:, 0].split(sizes), params, strict=True)]
            hessian_vector_product(list(grads), params, v)

        calls[("PyHessian hessian_vector_product (cached graph)", 1)] = ph_hvp
    except ImportError:
        log("    PyHessian not importable (make bench-env)")

    times: dict[tuple[str, int], list[float]] = {}
    for key, fn in list(calls.items()):
        try:
            fn()  # warm-up
        except RuntimeError as err:  # e.g. out of memory
            log(f"    {key[0]} block {key[1]} failed: {err}")
            del calls[key]
            continue
        times[key] = []
    for _ in range(repeats):
        for key, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t0) / key[1])
    rows: list[dict[str, Any]] = []
    best: dict[str, tuple[float, str]] = {}
    for (impl, block), ts in times.items():
        t = min(ts)
        rows.append({"impl": impl, "block": block, "seconds_per_vector": t, "repeats": repeats})
        log(f"    {impl:48s} block {block:3d}: {t * 1e3:8.3f} ms / vector")
        if impl.startswith("curvsketch:"):
            kind = "single" if block == 1 else "block"
            if t < best.get(kind, (float("inf"), ""))[0]:
                best[kind] = (t, impl.split(":", 1)[1])
    return rows, {k: v[1] for k, v in best.items()}


def _dense_reference(spec: ProblemSpec, model: nn.Module, X, y) -> tuple[torch.Tensor, ...]:
    m = copy.deepcopy(model).to(_dtype(spec.ref_dtype))
    op = HessianOperator(m, nn.functional.cross_entropy, (X.to(_dtype(spec.ref_dtype)), y))
    t0 = time.perf_counter()
    H = dense_matrix(op, block_size=512)
    t_dense = time.perf_counter() - t0
    log(f"[{spec.key}] dense Hessian {tuple(H.shape)} in {t_dense:.1f} s; eigh ...")
    H = (H + H.T) / 2
    lam, U = exact_top_eigenpairs(H, spec.ref_k)
    seconds = time.perf_counter() - t0
    info = {
        "kind": "dense Hessian + eigh (LAPACK evd), all eigenpairs, top ref_k kept",
        "dtype": spec.ref_dtype,
        "K": spec.ref_k,
        "seconds": seconds,
        "dense_seconds": t_dense,
        "products": op.num_products,
        "num_negative_in_top": int((lam < 0).sum()),
    }
    return lam, U, info


def eigsh_reference(
    op: Any, k: int, tol: float, seed: int = 0, ncv: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Top-``k`` by magnitude with scipy's ARPACK on ``op.to_scipy()``, sorted by |λ|."""
    from scipy.sparse.linalg import eigsh

    dim = op.shape[0]
    v0 = np.random.default_rng(seed).standard_normal(dim)
    t0 = time.perf_counter()
    before = op.num_products
    w, Z = eigsh(op.to_scipy(), k=k, which="LM", tol=tol, v0=v0, ncv=ncv)
    seconds = time.perf_counter() - t0
    order = np.argsort(-np.abs(w), kind="stable")
    lam = torch.from_numpy(np.ascontiguousarray(w[order]))
    U = torch.from_numpy(np.ascontiguousarray(Z[:, order]))
    return lam, U, {"seconds": seconds, "products": op.num_products - before}


def _residuals(op: Any, lam: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """‖H u_i − λ_i u_i‖ / |λ_i| for every pair, in blocks of BLOCK products."""
    out = torch.empty(len(lam), dtype=torch.float64)
    for i in range(0, len(lam), BLOCK):
        j = min(i + BLOCK, len(lam))
        block = U[:, i:j].to(op.dtype)
        r = op @ block - block * lam[i:j].to(op.dtype)
        out[i:j] = r.double().norm(dim=0) / lam[i:j].double().abs()
    return out


def _eigsh_reference(spec: ProblemSpec, model: nn.Module, X, y) -> tuple[torch.Tensor, ...]:
    m = copy.deepcopy(model).to(_dtype(spec.ref_dtype))
    op = HessianOperator(m, nn.functional.cross_entropy, (X.to(_dtype(spec.ref_dtype)), y))
    log(
        f"[{spec.key}] reference: eigsh k={spec.ref_k} tol={spec.ref_tol:g} in {spec.ref_dtype} "
        "(minutes at full size; cached afterwards)"
    )
    lam, U, info = eigsh_reference(op, spec.ref_k, spec.ref_tol, seed=spec.seed)
    t0 = time.perf_counter()
    res = _residuals(op, lam, U)
    info.update(
        {
            "kind": f"scipy eigsh (ARPACK) which='LM' k={spec.ref_k} tol={spec.ref_tol:g}",
            "dtype": spec.ref_dtype,
            "K": spec.ref_k,
            "max_rel_residual": float(res.max()),
            "residual_check_seconds": time.perf_counter() - t0,
            "num_negative_in_top": int((lam < 0).sum()),
        }
    )
    log(
        f"[{spec.key}] eigsh reference: {info['products']} products, {info['seconds']:.1f} s, "
        f"max ‖Hu−λu‖/|λ| = {info['max_rel_residual']:.2e}"
    )
    return lam, U, info


def load_problem(key: str, quick: bool, out: Path = OUT_DIR, repeats: int = 5) -> Problem:
    """Build (first time) or load (from the cache under ``out/problems``) one problem."""
    spec = spec_for(key, quick)
    cache = Path(out) / "problems"
    model = _trained_model(spec, cache)
    dtype = _dtype(spec.dtype)
    model = model.to(dtype)
    for p in model.parameters():
        p.grad = None
    _, X, y = _hessian_data(spec)
    X = X.to(dtype)
    ref_path = cache / f"{spec.cache_key()}_reference.pt"
    if ref_path.exists():
        saved = torch.load(ref_path, weights_only=False)
        lam, U, info = saved["values"], saved["vectors"], saved["info"]
        log(f"[{spec.key}] reference ({info['kind']}) from {ref_path}")
    else:
        if spec.reference == "dense":
            lam, U, info = _dense_reference(spec, model, X, y)
        else:
            lam, U, info = _eigsh_reference(spec, model, X, y)
        U = U.to(dtype)  # the vectors at the working precision (halves memory for b)
        torch.save({"spec": asdict(spec), "values": lam, "vectors": U, "info": info}, ref_path)
        log(f"[{spec.key}] reference cached -> {ref_path}")
    costs_path = cache / f"{spec.cache_key()}_costs.json"
    if costs_path.exists():
        saved = json.loads(costs_path.read_text())
        op_costs, engines = saved["op_costs"], saved["engines"]
    else:
        log(f"[{spec.key}] operator costs (seconds per vector, same model and data):")
        op_costs, engines = operator_costs(model, X, y, repeats)
        write_json(costs_path, {"op_costs": op_costs, "engines": engines, **machine()})
    problem = Problem(
        spec=spec,
        model=model,
        X=X,
        y=y,
        op_block=None,  # type: ignore[arg-type]
        op_single=None,  # type: ignore[arg-type]
        theta=torch.cat([p.detach().reshape(-1) for p in model.parameters()]),
        ref_values=lam.double(),
        ref_vectors=U,
        ref_info=info,
        engines=engines,
        op_costs=op_costs,
    )
    problem.op_block = problem.make_op(engines.get("block", "vmap"))
    problem.op_single = problem.make_op(engines.get("single", "graph"))
    # first products outside any timing: the determinism probe and lazy initialisation
    gen = torch.Generator().manual_seed(1)
    warm = torch.randn(problem.dim, 4, generator=gen, dtype=torch.float64).to(dtype)
    problem.op_block @ warm
    problem.op_single @ warm[:, 0]
    return problem


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny stand-ins (minutes)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--problems", nargs="+", default=["a", "b"], choices=["a", "b"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    set_threads(args.threads)
    payload: dict[str, Any] = {"meta": run_info(args), "problems": {}}
    for key in args.problems:
        problem = load_problem(key, args.quick, args.out)
        payload["problems"][key] = problem.summary()
        write_json(args.out / "problems.json", payload)
        info = problem.ref_info
        print(
            f"{problem.spec.title}: D={problem.dim:,}, engines {problem.engines}, reference "
            f"{info['K']} pairs in {info['seconds']:.1f} s ({info['products']} products); "
            f"top-3 λ {[round(v, 4) for v in problem.ref_values[:3].tolist()]}"
        )
    log(f"wrote {args.out / 'problems.json'}")


if __name__ == "__main__":
    main()
