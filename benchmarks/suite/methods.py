"""The eigensolvers of the comparison suite, behind one signature, and the accuracy metrics.

Every method is ``run(target, k, budget, seed) -> Outcome``: the ``k`` (or more) eigenpairs
of largest ``|λ|`` it found, sorted by ``|λ|`` descending with signs kept, the eigenvectors
as a ``(D, m)`` tensor, the number of operator products (counted by a wrapper around the
operator the method actually multiplies with) and the wall seconds of the call, eigenvector
materialisation included. ``budget`` is the knob the method is walked along (sketch size,
tolerance, iterations); each method has a ladder of budgets per ``k``.

Besides wall seconds, every run records the CPU seconds of the process (all threads): they
leave out time spent waiting for a CPU on a machine shared with other jobs (they do include
threads spinning at barriers) and serve as a check on the wall-time ratios. Ladders never
ask for a sketch or Krylov basis of more than ``MAX_BASIS_ENTRIES`` (4·10⁸, 1.6 GB in
float32) entries, so that the full-size runs fit a 24 GB machine.

Methods, all on the same model, data and loss (see ``benchmarks/suite/problems.py``):

* ``curvsketch singlepass`` — ``seigh(op, o, 2o, recovery="singlepass")``: 2o products.
* ``curvsketch hmt`` (``p=0``), ``hmt p=1``, ``hmt p=2`` — ``seigh(op, o, recovery="hmt",
  power_iters=p)``: (2 + p)·o products.
* ``curvsketch krylov`` — ``seigh(op, k, m, recovery="krylov")``: randomized block Krylov
  with Rayleigh–Ritz in blocks of ``min(64, ⌈m/8⌉)``, m products (rounded up to whole
  blocks).
* ``scipy eigsh`` — ARPACK implicitly restarted Lanczos on ``op.to_scipy()``, ``which="LM"``,
  the budget is ``tol`` (products as many as ARPACK asks for, one vector at a time).
* ``skerch hmt`` — skerch 1.2 ``seigh(..., recovery_type="hmt", noise_type="ssrft")`` on
  curvlinops 3.0.1's ``HessianLinearOperator`` (products counted inside its ``_matmat``;
  blocks of more than 64 columns, e.g. skerch's ``lop @ Q``, are handed over 64 at a time,
  curvsketch's own block size, to keep the memory of curvlinops' vmap bounded): 2o products.
* ``hessian-eigenthings lanczos`` — its ``lanczos(op, k=k, max_iter=m,
  reorthogonalize=True, which="LM")``: m products. It runs on the curvsketch operator
  wrapped in hessian-eigenthings' ``CurvatureOperator`` interface: their own
  ``HessianOperator.matvec`` is the same double-backward (forward, gradient with
  ``create_graph``, backward) that curvsketch's ``graph`` engine runs for one vector
  (``problems.json``'s operator costs time both side by side), and sharing the operator
  puts every solver on identical products, so that the comparison is between solvers.
* ``pyhessian power`` — PyHessian 0.1 ``hessian.eigenvalues(maxIter, tol, top_n=k)``: power
  iteration with deflation, only for ``k <= 20``. Its algorithm is run unchanged; only the
  product (its ``dataloader_hv_product``) is replaced by the shared curvsketch operator.
  Its iterates stay in the float32 it draws them in (products run in the operator's dtype
  and are cast back). Budget: ``(maxIter, tol)`` per eigenpair.

Single-vector solvers (eigsh, Lanczos, power iteration) get the curvsketch engine that is
fastest on one vector, block solvers the one fastest on blocks of 64 (``problems.py``).
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.harness import CountingOperator, timed
from curvsketch import seigh

BLOCK = 64
PYHESSIAN_MAX_K = 20
MAX_BASIS_ENTRIES = 400_000_000  # D × o (or D × m) at most


# ------------------------------------------------------------------------ outcomes


@dataclass
class Outcome:
    """What one method run returned and cost."""

    eigenvalues: torch.Tensor  # (m,) sorted by |λ| descending, signs kept
    eigenvectors: torch.Tensor  # (D, m)
    products: int
    seconds: float  # wall
    info: dict[str, Any] = field(default_factory=dict)
    cpu_seconds: float | None = None  # CPU time of the process (all threads) during the call


class RunTimeoutError(Exception):
    """A run went past its time cap."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`RunTimeoutError` inside the block after ``seconds`` (main thread, POSIX).

    The alarm interrupts Python code between bytecodes: the solvers here all loop in Python
    (ARPACK's reverse communication, the Lanczos and power loops, the sketch's blocks), so a
    run stops within one operator product of the cap.
    """
    if not seconds or seconds <= 0:
        yield
        return

    def handler(signum, frame):
        raise RunTimeoutError(f"over the cap of {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _sorted_by_magnitude(values: torch.Tensor, vectors: torch.Tensor):
    order = torch.as_tensor(np.argsort(-np.abs(values.double().numpy()), kind="stable"))
    return values[order], vectors[:, order]


# ----------------------------------------------------------------------- operators


class ChunkedCounter:
    """``@`` for skerch: hands at most ``block`` columns at a time to ``matmul`` (curvlinops
    multiplies all columns of a block in one vmap) and counts the vectors, here or, with
    ``count_here=False``, in the wrapped operator (see :meth:`Target.skerch_operator`)."""

    def __init__(
        self, matmul: Callable, shape, dtype, device, block: int = BLOCK, count_here: bool = True
    ) -> None:
        self._matmul = matmul
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype, self.device, self.block = dtype, device, block
        self.count_here = count_here
        self.count = 0

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        cols = 1 if x.ndim == 1 else x.shape[1]
        if self.count_here:
            self.count += cols
        if cols <= self.block or x.ndim == 1:
            return self._matmul(x)
        return torch.cat([self._matmul(c) for c in x.split(self.block, dim=1)], dim=1)


@dataclass
class Target:
    """What the methods run on: operators, the parameter layout, and a model (PyHessian)."""

    op_block: Any  # curvsketch-protocol operator for blocks of vectors
    op_single: Any  # the same matrix, engine tuned for one vector at a time
    params: list[torch.Tensor]  # tensors whose flattened concatenation is the D-vector
    model: nn.Module
    curvlinops: Callable[[], Any] | None = None  # factory; None: skerch uses op_block

    @property
    def dim(self) -> int:
        return int(self.op_block.shape[0])

    def skerch_operator(self) -> ChunkedCounter:
        """The operator skerch multiplies with: curvlinops' if available, with counting."""
        if self.curvlinops is None:
            op = self.op_block
            return ChunkedCounter(lambda x: op @ x, op.shape, op.dtype, op.device)
        lop = self.curvlinops()
        wrapper = ChunkedCounter(
            lambda x: lop @ x, lop.shape, lop.dtype, lop.device, count_here=False
        )
        inner = lop._matmat

        def counted(M: list[torch.Tensor]) -> list[torch.Tensor]:
            wrapper.count += M[0].shape[-1]  # vectors through curvlinops' own matmat
            return inner(M)

        lop._matmat = counted
        return wrapper


# ---------------------------------------------------------------------------- methods


def curvsketch_method(recovery: str, power_iters: int = 0):
    """``seigh`` with ``recovery`` (``power_iters`` for hmt); budget: the outer size o."""

    def run(target: Target, k: int, budget: dict, seed: int) -> Outcome:
        o = int(budget["o"])
        op = CountingOperator(target.op_block)
        inner = 2 * o if recovery == "singlepass" else None

        def call():
            res = seigh(
                op,
                o,
                inner,
                recovery=recovery,
                power_iters=power_iters,
                seed=seed,
                progress=False,
            )
            top = res.top(min(k, len(res)))
            return res, top.eigenvalues, top.eigenvectors

        (res, values, vectors), sec, cpu = timed(call)
        info = {"timings": {s: round(t, 4) for s, t in res.timings.items()}}
        return Outcome(values, vectors, op.count, sec, info, cpu)

    return run


def krylov_method(target: Target, k: int, budget: dict, seed: int) -> Outcome:
    """``seigh(op, k, m, recovery="krylov")``: block Krylov, default blocks; budget: ``m``."""
    m = int(budget["m"])
    op = CountingOperator(target.op_block)

    def call():
        res = seigh(op, k, m, recovery="krylov", seed=seed, progress=False)
        return res, res.eigenvalues, res.eigenvectors

    (res, values, vectors), sec, cpu = timed(call)
    info = {"timings": {s: round(t, 4) for s, t in res.timings.items()}}
    info["max_residual"] = float(res.residual_norms.max())
    return Outcome(values, vectors, op.count, sec, info, cpu)


def eigsh_method(target: Target, k: int, budget: dict, seed: int) -> Outcome:
    """scipy ``eigsh`` (ARPACK) on ``op.to_scipy()``; budget: ``tol`` (and ``ncv``)."""
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    op = CountingOperator(target.op_single)
    v0 = np.random.default_rng(seed).standard_normal(op.shape[0])
    info: dict[str, Any] = {}

    def call():
        try:
            w, Z = eigsh(
                op.to_scipy(), k=k, which="LM", tol=budget["tol"], v0=v0, ncv=budget.get("ncv")
            )
        except ArpackNoConvergence as err:  # keep what converged
            w, Z = err.eigenvalues, err.eigenvectors
            info["not_converged"] = True
        return _sorted_by_magnitude(
            torch.from_numpy(np.ascontiguousarray(w)), torch.from_numpy(np.ascontiguousarray(Z))
        )

    (values, vectors), sec, cpu = timed(call)
    return Outcome(values, vectors, op.count, sec, info, cpu)


def skerch_method(recovery: str = "hmt"):
    """skerch 1.2 ``seigh`` on curvlinops' Hessian (or on op_block when there is none)."""

    def run(target: Target, k: int, budget: dict, seed: int) -> Outcome:
        import skerch.algorithms as sk

        o = int(budget["o"])
        lop = target.skerch_operator()

        def call():
            ews, evs = sk.seigh(
                lop,
                lop.device,
                lop.dtype,
                o,
                seed=1000 + seed,
                noise_type="ssrft",
                recovery_type=recovery,
                meas_blocksize=BLOCK,
            )
            values, vectors = torch.as_tensor(ews)[:k], torch.as_tensor(evs)[:, :k]
            return values, vectors

        (values, vectors), sec, cpu = timed(call)
        operator = "curvlinops" if target.curvlinops is not None else "curvsketch op_block"
        return Outcome(values, vectors, lop.count, sec, {"operator": operator}, cpu)

    return run


def _he_operator(op: Any):
    """Our counted operator in hessian-eigenthings' ``CurvatureOperator`` interface."""
    import hessian_eigenthings as he

    class Wrapped(he.CurvatureOperator):
        @property
        def size(self) -> int:
            return op.shape[0]

        @property
        def device(self) -> torch.device:
            return op.device

        @property
        def dtype(self) -> torch.dtype:
            return op.dtype

        def matvec(self, v: torch.Tensor) -> torch.Tensor:
            return op @ v

    return Wrapped()


def lanczos_method(target: Target, k: int, budget: dict, seed: int) -> Outcome:
    """hessian-eigenthings ``lanczos`` with full reorthogonalisation; budget: iterations m."""
    import hessian_eigenthings as he

    op = CountingOperator(target.op_single)
    m = int(budget["m"])

    def call():
        res = he.lanczos(
            _he_operator(op), k=k, max_iter=m, reorthogonalize=True, which="LM", seed=seed
        )
        return res.eigenvalues, res.eigenvectors.T, res

    (values, vectors, res), sec, cpu = timed(call)
    info = {"iterations": int(res.iterations), "converged": int(res.converged.sum())}
    return Outcome(values, vectors, op.count, sec, info, cpu)


def pyhessian_method(target: Target, k: int, budget: dict, seed: int) -> Outcome:
    """PyHessian's deflated power iteration, its products from the shared operator."""
    from pyhessian import hessian as PyHessian
    from pyhessian.utils import group_product

    if k > PYHESSIAN_MAX_K:
        raise ValueError(f"PyHessian power iteration only for k <= {PYHESSIAN_MAX_K}")
    op = CountingOperator(target.op_single)
    sizes = [p.numel() for p in target.params]

    class SharedOperatorHessian(PyHessian):
        """PyHessian's ``hessian`` with its data pass replaced by our operator's product."""

        def dataloader_hv_product(self, v):
            flat = torch.cat([vi.reshape(-1) for vi in v]).to(op.dtype)
            hv = (op @ flat).to(v[0].dtype)
            THv = [c.view_as(vi) for c, vi in zip(hv.split(sizes), v, strict=True)]
            return group_product(THv, v).cpu().item(), THv

    def call():
        # the full-dataset path (dataloader=...) computes nothing at construction time
        ph = SharedOperatorHessian(target.model, None, dataloader=[], cuda=False)
        ph.params = list(target.params)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vals, vecs = ph.eigenvalues(maxIter=budget["max_iter"], tol=budget["tol"], top_n=k)
        values = torch.tensor(vals, dtype=torch.float64)
        vectors = torch.stack([torch.cat([c.reshape(-1) for c in v]) for v in vecs], dim=1)
        return _sorted_by_magnitude(values, vectors)

    (values, vectors), sec, cpu = timed(call)
    return Outcome(values, vectors, op.count, sec, {}, cpu)


# --------------------------------------------------------------------------- ladders


def _sizes(k: int, cap: int, factors) -> list[dict]:
    out = []
    for f in factors:
        o = min(max(k, math.ceil(f * k)), cap)
        if not out or o > out[-1]["o"]:
            out.append({"o": o})
    return out


def sketch_ladder(factors_full, factors_quick, singlepass: bool = False):
    def ladder(k: int, dim: int, quick: bool) -> list[dict]:
        cap = min(dim // 2 if singlepass else dim, MAX_BASIS_ENTRIES // dim)
        return _sizes(k, cap, factors_quick if quick else factors_full)

    return ladder


def eigsh_ladder(k: int, dim: int, quick: bool) -> list[dict]:
    tols = (1e-1, 1e-2, 1e-4) if quick else (1e-1, 3e-2, 1e-2, 1e-3, 1e-4, 1e-6)
    return [{"tol": t} for t in tols]


def lanczos_ladder(k: int, dim: int, quick: bool) -> list[dict]:
    factors = (1.5, 2, 3, 5) if quick else (1.25, 1.5, 2, 3, 4, 6, 8)
    out: list[dict] = []
    for f in factors:
        m = min(max(k + 5, math.ceil(f * k)), dim - 1, MAX_BASIS_ENTRIES // dim)
        if not out or m > out[-1]["m"]:
            out.append({"m": m})
    return out


def krylov_ladder(k: int, dim: int, quick: bool) -> list[dict]:
    factors = (1.5, 2, 3, 4, 6) if quick else (1.5, 2, 2.5, 3, 4, 6, 8)
    cap = min(dim, MAX_BASIS_ENTRIES // dim) // BLOCK * BLOCK
    out: list[dict] = []
    for f in factors:
        m = min(math.ceil(f * k), cap)
        if m >= k and (not out or m > out[-1]["m"]):
            out.append({"m": m})
    return out


def pyhessian_ladder(k: int, dim: int, quick: bool) -> list[dict]:
    if k > PYHESSIAN_MAX_K:
        return []
    steps = ((20, 1e-2), (100, 1e-3))
    if not quick:
        steps += ((300, 1e-4), (1000, 1e-5))
    return [{"max_iter": m, "tol": t} for m, t in steps]


@dataclass(frozen=True)
class Method:
    name: str
    family: str  # for grouping and ratios: "curvsketch" or the neighbour's name
    run: Callable[[Target, int, dict, int], Outcome]
    ladder: Callable[[int, int, bool], list[dict]]
    budget: str  # what the ladder varies


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "curvsketch singlepass",
            "curvsketch",
            curvsketch_method("singlepass"),
            sketch_ladder((1, 1.5, 2, 3, 4, 6, 8), (1, 2, 4), singlepass=True),
            "outer o (inner s = 2o)",
        ),
        Method(
            "curvsketch hmt",
            "curvsketch",
            curvsketch_method("hmt"),
            sketch_ladder((1, 1.5, 2, 3, 4, 6), (1, 2, 4)),
            "outer o",
        ),
        Method(
            "curvsketch hmt p=1",
            "curvsketch",
            curvsketch_method("hmt", 1),
            sketch_ladder((1, 1.25, 1.5, 2, 3, 4), (1, 2, 3, 5)),
            "outer o",
        ),
        Method(
            "curvsketch hmt p=2",
            "curvsketch",
            curvsketch_method("hmt", 2),
            sketch_ladder((1, 1.25, 1.5, 2, 3), (1, 2, 3, 4)),
            "outer o",
        ),
        Method(
            "curvsketch krylov",
            "curvsketch",
            krylov_method,
            krylov_ladder,
            "Krylov basis size m",
        ),
        Method("scipy eigsh", "scipy", eigsh_method, eigsh_ladder, "tol"),
        Method(
            "skerch hmt (curvlinops)",
            "skerch",
            skerch_method("hmt"),
            sketch_ladder((1, 1.5, 2, 3, 4, 6, 8, 12, 16, 20), (1, 2, 4, 8)),
            "outer o",
        ),
        Method(
            "hessian-eigenthings lanczos",
            "hessian-eigenthings",
            lanczos_method,
            lanczos_ladder,
            "Lanczos iterations m",
        ),
        Method(
            "pyhessian power",
            "pyhessian",
            pyhessian_method,
            pyhessian_ladder,
            "(maxIter, tol) per eigenpair",
        ),
    )
}


def budget_label(budget: dict) -> str:
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in budget.items()
    )


def available_methods(names: list[str] | None = None) -> list[Method]:
    """The selected methods whose packages import (the others are reported and skipped)."""
    import importlib

    needs = {
        "skerch": ["skerch", "curvlinops"],
        "hessian-eigenthings": ["hessian_eigenthings"],
        "pyhessian": ["pyhessian"],
        "scipy": ["scipy"],
        "curvsketch": [],
    }
    chosen = [METHODS[n] for n in (names or list(METHODS))]
    out = []
    for m in chosen:
        try:
            for mod in needs[m.family]:
                importlib.import_module(mod)
        except ImportError as err:
            print(f"skipping {m.name}: {err} (make bench-env installs it)", flush=True)
            continue
        out.append(m)
    return out


# --------------------------------------------------------------------------- metrics


def eigenvalue_error(lam: torch.Tensor, lam_hat: torch.Tensor) -> float:
    """``max_i |λ_i − λ̂_i|`` for two top-k lists (by ``|λ|``, signs kept), matched by sign.

    The positive eigenvalues of both lists are paired from the largest down, the negative
    ones from the most negative up; what is left over (when the lists hold different
    numbers of positives: a ``+a``/``−a'`` tie at the cut-off ``|λ_k|`` fell the other
    way) is paired by ``|λ|``. Matching both lists in ``|λ|`` order instead would score the
    order of near-ties: on problem (b) 339 adjacent reference pairs of opposite sign
    differ in ``|λ|`` by less than ``10⁻³·|λ_k|``, so an estimate with errors far below
    the target lists them the other way round and scores ``2|λ_i|`` (up to 2·|λ_k| near
    the cut-off, 200× the target).
    """
    lam, lam_hat = lam.double().flatten(), lam_hat.double().flatten()
    if lam.numel() != lam_hat.numel():
        raise ValueError(f"lists of {lam.numel()} and {lam_hat.numel()} eigenvalues")

    def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.sort(x[x > 0], descending=True).values
        neg = torch.sort(-x[x <= 0], descending=True).values  # magnitudes
        return pos, neg

    (pos, neg), (pos_h, neg_h) = split(lam), split(lam_hat)
    n_pos, n_neg = min(len(pos), len(pos_h)), min(len(neg), len(neg_h))
    errs = [(pos[:n_pos] - pos_h[:n_pos]).abs(), (neg[:n_neg] - neg_h[:n_neg]).abs()]
    left = torch.sort(torch.cat([pos[n_pos:], neg[n_neg:]]), descending=True).values
    left_h = torch.sort(torch.cat([pos_h[n_pos:], neg_h[n_neg:]]), descending=True).values
    errs.append((left - left_h).abs())
    return float(torch.cat(errs).max()) if lam.numel() else 0.0


def mask_overlap_rows(U: torch.Tensor, theta: torch.Tensor, k: int) -> float:
    """(1/k)·‖U[S_k, :k]‖² for the top-k magnitude mask S_k of ``θ`` (row-norm overlap).

    Args:
        U: eigenvectors, one per column, sorted by ``|λ|``.
        theta: the parameter vector.
        k: mask size and number of eigenvectors.

    Returns:
        The overlap of the mask with the span of the top ``k`` eigenvectors.
    """
    S = theta.abs().argsort(descending=True)[:k]
    return float((U[S, :k] ** 2).sum() / k)


def accuracy(
    ref_values: torch.Tensor,
    ref_vectors: torch.Tensor,
    theta: torch.Tensor,
    k: int,
    out: Outcome,
) -> dict[str, Any]:
    """Top-k accuracy of a run against the reference.

    * ``eig_err``: ``max_{i≤k} |λ_i − λ̂_i| / |λ_k|`` with the eigenvalues matched by
      sign (:func:`eigenvalue_error`): a sign error counts, a near-tie ``+a``/``−a'``
      listed in the other order by ``|λ|`` does not.
    * ``eig_err_magnitude_order``: the same with both lists matched in ``|λ|`` order
      (kept for comparison; on indefinite spectra with near-ties it measures the order of
      the ties, not the error of the eigenvalues).
    * ``overlap``: ``‖U_kᵀ Q‖_F² / k`` where ``Q`` is an orthonormal basis of the run's
      top-k eigenvectors (1 = the same subspace).
    * ``mask_overlap_err``: ``|overlap(S_k, Û_k) − overlap(S_k, U_k)|`` for the top-k
      magnitude mask ``S_k`` of ``|θ|`` (row-norm overlap, :func:`mask_overlap_rows`).
    """
    m = len(out.eigenvalues)
    if m < k:
        return {
            "k": k,
            "eig_err": None,
            "overlap": None,
            "mask_overlap_err": None,
            "note": f"only {m} eigenpairs returned",
        }
    lam = ref_values[:k].double()
    lam_hat = out.eigenvalues[:k].double().cpu()
    eig_err = eigenvalue_error(lam, lam_hat) / float(lam[-1].abs())
    eig_err_order = float((lam - lam_hat).abs().max() / lam[-1].abs())
    U = ref_vectors[:, :k]
    V = out.eigenvectors[:, :k].to(U.dtype).cpu()
    Q = torch.linalg.qr(V).Q
    overlap = float((U.T @ Q).double().pow(2).sum() / k)
    mask_ref = mask_overlap_rows(U, theta.to(U.dtype), k)
    mask_hat = mask_overlap_rows(Q, theta.to(U.dtype), k)
    return {
        "k": k,
        "eig_err": eig_err,
        "eig_err_magnitude_order": eig_err_order,
        "overlap": overlap,
        "mask_overlap": mask_hat,
        "mask_overlap_ref": mask_ref,
        "mask_overlap_err": abs(mask_hat - mask_ref),
    }


def meets_target(acc: dict[str, Any], eig_tol: float = 0.01, overlap_min: float = 0.99) -> bool:
    """``max_{i≤k}|λ_i−λ̂_i| ≤ eig_tol·|λ_k|`` and top-k subspace overlap ``≥ overlap_min``."""
    return (
        acc.get("eig_err") is not None
        and acc["eig_err"] <= eig_tol
        and acc["overlap"] >= overlap_min
    )


def measure(
    method: Method,
    target: Target,
    ref: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    k: int,
    budget: dict,
    seed: int,
    cap: float | None,
) -> dict[str, Any]:
    """Run ``method`` once under a time cap and score it: one JSON-ready row.

    ``ref`` is ``(reference eigenvalues, reference eigenvectors, θ)``. ``status`` is
    ``"ok"``, ``"timeout"`` (over ``cap`` seconds) or ``"error: …"``.
    """
    import gc

    row: dict[str, Any] = {
        "method": method.name,
        "family": method.family,
        "k": k,
        "budget": budget,
        "budget_label": budget_label(budget),
        "seed": seed,
    }
    gc.collect()
    t0 = time.perf_counter()
    try:
        with time_limit(cap):
            out = method.run(target, k, budget, seed)
    except RunTimeoutError:
        row.update(status="timeout", seconds=time.perf_counter() - t0, cap=cap)
        return row
    except (ValueError, RuntimeError, FloatingPointError, np.linalg.LinAlgError) as err:
        row.update(status=f"error: {type(err).__name__}: {err}", seconds=time.perf_counter() - t0)
        return row
    row.update(
        status="ok",
        products=out.products,
        seconds=out.seconds,
        cpu_seconds=out.cpu_seconds,
        info=out.info,
    )
    try:
        row.update(accuracy(*ref[:2], ref[2], k, out))
    except (RuntimeError, ValueError, torch.linalg.LinAlgError) as err:  # e.g. NaN vectors
        row.update(status=f"error scoring the result: {type(err).__name__}: {err}")
        return row
    row["meets_target"] = meets_target(row)
    return row


def describe(row: dict[str, Any]) -> str:
    """One progress line for a measured row."""
    head = f"{row['method']:28s} k={row['k']:<5d} {row['budget_label']:22s}"
    if row["status"] != "ok":
        return f"{head} {row['status']} after {row['seconds']:.1f} s"
    cost = f"{row['products']:6d} products {row['seconds']:7.2f} s ({row['cpu_seconds']:.1f} cpu)"
    if row.get("eig_err") is None:
        return f"{head} {cost}  {row.get('note')}"
    return (
        f"{head} {cost}  "
        f"eig err {row['eig_err']:.2e}  overlap {row['overlap']:.4f}  "
        f"|Δmask| {row['mask_overlap_err']:.4f}"
    )
