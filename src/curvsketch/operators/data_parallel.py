"""Data-parallel curvature operators: the Hessian samples split over ``torch.distributed`` ranks.

For a model whose activations over all Hessian samples do not fit one device, each rank
holds a contiguous shard of the samples (:func:`shard_samples`, :func:`shard_data`) and a
local :class:`~curvsketch.operators.HessianOperator` or
:class:`~curvsketch.operators.GGNOperator` on it. A local operator is the curvature of
the *mean* loss over its own ``T_r`` loss terms, ``H_r = (1/T_r) Σ_{i∈r} h_i``, whatever its
``reduction`` (a ``"sum"`` loss is weighted by ``1/T_r`` per term already); the operator
of all ``T = Σ_r T_r`` terms is therefore

    ``H = (1/T) Σ_i h_i = Σ_r (T_r / T) H_r``,

so :class:`DataParallelOperator` multiplies each rank's block product by ``T_r / T``
(:func:`shard_weight`; ``T_r`` is the local ``samples.num_terms``, which counts loss terms
with ``num_loss_terms`` and samples without) and sums the blocks with one ``all_reduce``.
Averaging the local products instead would be wrong as soon as the shards are unequal,
in samples or in loss terms (padded token losses). This is the data-parallel sum of the
per-sample curvature products of Pearlmutter (1994), in the all-reduce form of synchronous
data-parallel SGD (Goyal et al., "Accurate, large minibatch SGD", 2017, §3).

The wrapper speaks the operator protocol (``shape``, ``dtype``, ``device``, ``@`` on a
``(D, m)`` block, ``gradient()``), so ``seigh``, ``trace``, ``spectral_density`` run on it
unchanged. **Every product is collective**: every rank must call ``op @ X`` (and
``op.gradient()``) the same number of times, in the same order, with the same ``X``; a
solver run identically on every rank (in memory, same arguments and seed) does exactly
that. Each product first compares the shape and two checksums of ``X`` over the ranks
(one small ``all_reduce``) and raises the same error on every rank if they differ; a
local product that fails on one rank makes every rank raise instead of hanging.

Without an initialised process group, or with world size 1, the wrapper is the plain
local operator (weight 1, no communication).
"""

from __future__ import annotations

from typing import Any

import torch

from curvsketch.operators.curvature import GGNOperator, HessianOperator
from curvsketch.operators.protocol import LinearOperator
from curvsketch.operators.shards import (
    _dist,
    _rank_world,
    shard_data,
    shard_weight,
)

__all__ = [
    "DataParallelOperator",
    "data_parallel_operator",
]

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
#: Relative tolerance of the cross-rank checksums of ``X`` and of the parameters.
_CHECK_RTOL = {torch.float64: 1e-10, torch.float32: 1e-4}


# ---------------------------------------------------------------------- the wrapper
class _FailedShard:
    """Stands for a local operator that could not be built on this rank."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _local_terms(local: Any, terms: int | None) -> int:
    if terms is not None:
        if isinstance(terms, bool) or not isinstance(terms, int) or terms < 1:
            raise ValueError(f"terms must be a positive integer (loss terms), got {terms!r}")
        return terms
    counted = getattr(getattr(local, "samples", None), "num_terms", None)
    if not isinstance(counted, int):
        raise TypeError(
            f"DataParallelOperator: {type(local).__name__} has no samples.num_terms; pass "
            "terms= (the number of loss terms the local operator averages over)"
        )
    return counted


class DataParallelOperator(LinearOperator):
    """A curvature operator whose samples are split over ``torch.distributed`` ranks.

    Construction and every product are collective over ``group`` (see the module
    docstring): call them on every rank, in the same order, with the same arguments.

    Args:
        local: this rank's operator on its shard of the samples (e.g. a
            :class:`~curvsketch.operators.HessianOperator`), symmetric ``D × D``.
        group: the process group (default: the world group); ignored without one.
        terms: the number of loss terms the local operator averages over (default:
            ``local.samples.num_terms``).

    Attributes:
        local: the local operator. ``rank``, ``world_size``: of this process in ``group``.
        local_terms, total_terms: ``T_r`` and ``T``; ``weight = T_r / T``.
        shape, dtype, device: those of ``local`` (the same on every rank).
        num_products: vectors multiplied through this wrapper.
        collective: ``True``: callers must run products identically on every rank.

    Raises:
        ValueError: (on every rank) ranks disagree on ``D``, dtype or the model parameters,
            or the local operator is not square.
        RuntimeError: (on every rank) the local operator could not be built on some rank.
    """

    collective = True

    def __init__(self, local: Any, *, group: Any = None, terms: int | None = None) -> None:
        dist = _dist()
        self._group = group
        self.rank, self.world_size = _rank_world(None, None, group)
        self._distributed = dist is not None and self.world_size > 1
        nccl = dist is not None and dist.get_backend(group) == "nccl"
        self._comm = (
            torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        )
        error = local.error if isinstance(local, _FailedShard) else None
        if error is None:
            try:
                self._adopt(local, terms)
            except Exception as err:  # raised after the collective check, on every rank
                error = err
        if not self._distributed:
            if error is not None:
                raise error
            self.total_terms, self.weight = self.local_terms, 1.0
            return
        self._agree(error)

    def _adopt(self, local: Any, terms: int | None) -> None:
        if len(local.shape) != 2 or local.shape[0] != local.shape[1]:
            raise ValueError(
                f"DataParallelOperator: the local operator must be square, got {local.shape}"
            )
        self.local = local
        self.shape = (int(local.shape[0]), int(local.shape[1]))
        self.dtype = local.dtype
        self.device = torch.device(local.device)
        self.local_terms = _local_terms(local, terms)
        self.num_products = 0

    # ------------------------------------------------------------------ collectives
    def _gather(self, row: list[float]) -> torch.Tensor:
        """Every rank's ``row`` (world, k), via one SUM all-reduce of rank-owned slots."""
        slots = torch.zeros(self.world_size, len(row), dtype=torch.float64, device=self._comm)
        slots[self.rank] = torch.tensor(row, dtype=torch.float64, device=self._comm)
        torch.distributed.all_reduce(slots, group=self._group)
        return slots.cpu()

    def _agree(self, error: Exception | None) -> None:
        """Construction check: every rank built its shard, same D, dtype and parameters."""
        if error is None:
            theta = self._parameter_checksum()
            code = _DTYPES.index(self.dtype) if self.dtype in _DTYPES else len(_DTYPES)
            row = [1.0, self.shape[0], self.local_terms, code, *theta]
        else:
            row = [0.0] * 7
        rows = self._gather(row)
        failed = [r for r in range(self.world_size) if rows[r, 0] == 0]
        if failed:
            msg = f"DataParallelOperator: the local operator failed to build on rank(s) {failed}"
            if error is not None:
                raise RuntimeError(f"{msg}; on this rank ({self.rank}): {error}") from error
            raise RuntimeError(f"{msg}; see the error printed by those ranks")
        dims = [int(d) for d in rows[:, 1]]
        if len(set(dims)) > 1:
            raise ValueError(
                f"DataParallelOperator: ranks disagree on the operator's dimension D: {dims} "
                "(by rank); every rank needs the same model and params="
            )
        codes = [int(c) for c in rows[:, 3]]
        if len(set(codes)) > 1:
            names = [str(_DTYPES[c]) if 0 <= c < len(_DTYPES) else "?" for c in codes]
            raise ValueError(f"DataParallelOperator: ranks disagree on the dtype: {names}")
        bad = _mismatched(rows[:, 4:6], rows[:, 6], _CHECK_RTOL.get(self.dtype, 1e-2))
        if bad:
            raise ValueError(
                f"DataParallelOperator: the model parameters on rank(s) {bad} differ from rank "
                "0's; build the model with the same seed on every rank or broadcast it from rank "
                "0 (torch.distributed.broadcast of each parameter) before building the operator"
            )
        self.total_terms = int(rows[:, 2].sum())
        self.weight = shard_weight(self.local_terms, self.total_terms)

    def _parameter_checksum(self) -> list[float]:
        vector = getattr(self.local, "parameter_vector", None)
        if not callable(vector):
            return [0.0, 0.0, 0.0]
        return _checksums(vector().reshape(-1, 1))

    def _check_same_block(self, x: torch.Tensor) -> None:
        rows = self._gather([float(x.shape[1]), *_checksums(x)])
        widths = [int(w) for w in rows[:, 0]]
        if len(set(widths)) > 1:
            raise ValueError(
                f"DataParallelOperator @ X: ranks passed blocks of different widths {widths} (by "
                "rank); products are collective: every rank must call op @ X with the same X"
            )
        bad = _mismatched(rows[:, 1:3], rows[:, 3], _CHECK_RTOL.get(self.dtype, 1e-2))
        if bad:
            raise ValueError(
                f"DataParallelOperator @ X: X on rank(s) {bad} differs from rank 0's; products are "
                "collective: run the solver identically on every rank (same arguments and seed), "
                "in memory (seigh(store=...) under torchrun splits blocks over the ranks)"
            )

    def _reduce(self, compute: Any, shape: tuple[int, ...]) -> torch.Tensor:
        """``Σ_r weight_r · compute()_r`` over the ranks; a failure raises on every rank."""
        error: Exception | None = None
        numel = int(torch.Size(shape).numel())
        buf = torch.zeros(numel + self.world_size, dtype=self.dtype, device=self._comm)
        try:
            part = compute()
            mine = buf[:numel].view(shape)
            mine.copy_(part)
            mine.mul_(self.weight)
        except Exception as err:  # raised below, after the collective, on every rank
            error = err
            buf.zero_()
            buf[numel + self.rank] = 1
        torch.distributed.all_reduce(buf, group=self._group)
        failed = torch.nonzero(buf[numel:]).flatten().tolist()
        if error is not None:
            raise error
        if failed:
            raise RuntimeError(
                f"DataParallelOperator: the local product failed on rank(s) {failed}; see the "
                "error raised there"
            )
        return buf[:numel].view(shape).to(self.device)

    # ------------------------------------------------------------------ protocol
    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        if not self._distributed:
            out = self.local @ x
        else:
            self._check_same_block(x)
            out = self._reduce(lambda: self.local @ x, tuple(x.shape))
        self.num_products += int(x.shape[1])
        return out

    def gradient(self) -> torch.Tensor:
        """The gradient of the mean loss over all ranks' samples (collective).

        Returns:
            A ``(D,)`` tensor, the same on every rank.
        """
        if not self._distributed:
            return self.local.gradient()
        return self._reduce(lambda: self.local.gradient(), (self.shape[0],))

    def parameter_vector(self) -> torch.Tensor:
        """The model parameters, flattened in operator order (the same on every rank)."""
        return self.local.parameter_vector()

    @property
    def model(self) -> Any:
        """The local operator's model (a replica on every rank)."""
        return getattr(self.local, "model", None)

    @property
    def loss_fn(self) -> Any:
        """The local operator's loss function."""
        return getattr(self.local, "loss_fn", None)

    @property
    def param_names(self) -> Any:
        """Names of the differentiated parameters, in operator order."""
        return getattr(self.local, "param_names", None)

    @property
    def determinism_rtol(self) -> float | None:
        """The local operator's determinism tolerance, if it has one."""
        return getattr(self.local, "determinism_rtol", None)

    def __repr__(self) -> str:
        return (
            f"DataParallelOperator(D={self.shape[0]}, rank={self.rank}/{self.world_size}, "
            f"terms={self.local_terms}/{self.total_terms}, local={type(self.local).__name__}, "
            f"dtype={self.dtype}, device={self.device})"
        )


def _checksums(x: torch.Tensor) -> list[float]:
    """Two position-sensitive checksums of a ``(D, m)`` block and their absolute scale."""
    d, m = x.shape
    rows = torch.linspace(1.0, 2.0, d, dtype=x.dtype, device=x.device)
    cols = torch.linspace(1.0, 2.0, m, dtype=torch.float64, device=x.device)
    r = (rows @ x).double()
    scale = (rows @ x.abs()).double().sum()
    return [float(r.sum()), float(r @ cols), float(2 * scale)]


def _mismatched(sums: torch.Tensor, scales: torch.Tensor, rtol: float) -> list[int]:
    """Ranks whose checksums (rows of ``sums``) differ from rank 0's beyond rounding."""
    tol = rtol * max(float(scales.max()), torch.finfo(torch.float64).tiny)
    return [r for r in range(sums.shape[0]) if bool(((sums[r] - sums[0]).abs() > tol).any())]


def data_parallel_operator(
    model: torch.nn.Module,
    loss_fn: Any,
    data: Any,
    *,
    kind: str = "hessian",
    group: Any = None,
    **operator_kwargs: Any,
) -> DataParallelOperator:
    """Build this rank's curvature operator on its shard of ``data`` and wrap it (collective).

    Args:
        model: the network, with the same parameters on every rank.
        loss_fn: as for :class:`~curvsketch.operators.HessianOperator`.
        data: all samples (the same on every rank), split by :func:`shard_data`.
        kind: ``"hessian"`` or ``"ggn"``.
        group: the process group (default: the world group).
        **operator_kwargs: passed to the operator (``params``, ``engine``,
            ``micro_batch_size``, ``reduction``, ``num_loss_terms``, ...).

    Returns:
        A :class:`DataParallelOperator` (the plain operator's equal without a process group).

    Raises:
        ValueError: a bad ``kind``; on every rank, errors of any rank's local operator
            (as a ``RuntimeError``) and the checks of :class:`DataParallelOperator`.
    """
    classes = {"hessian": HessianOperator, "ggn": GGNOperator}
    if kind not in classes:
        raise ValueError(f"kind must be 'hessian' or 'ggn', got {kind!r}")
    rank, world = _rank_world(None, None, group)
    try:
        local: Any = classes[kind](model, loss_fn, shard_data(data, rank, world), **operator_kwargs)
    except Exception as err:  # every rank raises it, after the collective check
        if world == 1:
            raise
        local = _FailedShard(err)
    return DataParallelOperator(local, group=group)
