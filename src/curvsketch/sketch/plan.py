"""One plan per solve: every size, block, product count and stream of a sketch, validated once.

:func:`make_plan` holds all the size rules of :func:`curvsketch.sketch.seigh`, of the store
(:mod:`.stored`: :func:`~curvsketch.sketch.stored.measure`,
:func:`~curvsketch.sketch.stored.recover`, the workers), of the study
(:mod:`curvsketch.experiments.measure_step`) and of the CLI, with their error messages; the
frozen :class:`SketchPlan` it returns is what every recovery module reads (one module per
recovery, :mod:`.recovery`). Nothing downstream derives a size again.

Products per recovery (``o = outer``, ``s = inner``, ``p = power_iters``):

* ``"singlepass"``: ``s`` (the first ``o`` products double as the outer sketch; Fernandez,
  Schneider, Mahsereci, Hennig, TMLR 2025, §3, Alg. 2);
* ``"tropp"``: ``o + s`` (an independent outer sketch; Tropp, Yurtsever, Udell, Cevher 2019);
* ``"hmt"``: ``o·(2 + p)`` (Halko, Martinsson, Tropp 2011), plus :data:`SHIFT_STEPS` for the
  shift estimate when ``which`` is ``"LA"`` or ``"SA"`` (:mod:`.hmt`);
* ``"nystrom"``: ``o`` (Tropp et al., NeurIPS 2017);
* ``"krylov"``: ``s`` rounded up to whole Krylov blocks (Musco & Musco, NeurIPS 2015).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from curvsketch.sketch.noise import (
    STREAM_OMEGA,
    STREAM_PHI,
    STREAM_PSI,
    STREAM_SHIFT,
    NoiseOperator,
    make_noise,
)
from curvsketch.sketch.validate import (
    check_block_size,
    check_count,
    check_inner,
    check_noise,
    check_operator,
    check_outer,
    check_seed,
    resolve_dtype_device,
)

__all__ = [
    "KRYLOV_BLOCK",
    "KRYLOV_MIN_DEPTH",
    "RECOVERIES",
    "SHIFT_STEPS",
    "WHICH",
    "WHICH_RECOVERIES",
    "SketchPlan",
    "SvdPlan",
    "make_plan",
    "make_svd_plan",
]

RECOVERIES = ("singlepass", "tropp", "hmt", "nystrom", "krylov")
#: Which eigenvalues: largest ``|λ|`` (the paper's), largest algebraic, smallest algebraic.
WHICH = ("LM", "LA", "SA")
#: Recoveries that select Rayleigh–Ritz pairs and so can serve ``which="LA"``/``"SA"``.
WHICH_RECOVERIES = ("hmt", "krylov")
#: Largest default Krylov block, and the fewest blocks a default Krylov basis has.
KRYLOV_BLOCK, KRYLOV_MIN_DEPTH = 64, 8
#: Lanczos steps (single-vector products) of the shift estimate of ``"hmt"`` with
#: ``which="LA"``/``"SA"`` (capped at ``D``).
SHIFT_STEPS = 20
_CORE_RECOVERIES = ("singlepass", "tropp")
#: Recoveries that take ``inner``: the inner sketch size, or the Krylov basis size.
_INNER_RECOVERIES = (*_CORE_RECOVERIES, "krylov")
_STREAMS = {
    "singlepass": (STREAM_PSI, STREAM_PHI),
    "tropp": (STREAM_PSI, STREAM_PHI, STREAM_OMEGA),
    "hmt": (STREAM_PSI,),
    "nystrom": (STREAM_PSI,),
    "krylov": (STREAM_PSI,),
}


@dataclass(frozen=True)
class SketchPlan:
    """The validated settings of one sketched eigendecomposition (build with :func:`make_plan`).

    Attributes:
        recovery: one of :data:`RECOVERIES`.
        dim: ``D``, the operator's dimension.
        outer: ``o``, the eigenpairs (outer sketch size).
        inner: ``s`` (``"singlepass"``/``"tropp"``), the Krylov basis size ``m`` rounded up
            to whole blocks (``"krylov"``), else ``None``.
        block_size: test vectors per operator call; for ``"krylov"`` the Krylov block.
        blocks: ``"krylov"``: the Krylov depth ``d`` (``inner = d·block_size``); otherwise
            the blocks of test vectors of one pass: ``⌈s/block_size⌉`` for the single pass
            (the blocks of a store), ``⌈o/block_size⌉`` for ``"hmt"`` and ``"nystrom"``.
        num_products: operator products of the sketch (not the symmetry check's).
        noise: test-operator kind.
        seed: seed of the test operators.
        power_iters: subspace iterations (``"hmt"``).
        which: ``"LM"``, ``"LA"`` or ``"SA"`` (:data:`WHICH`).
        shift_steps: products of the shift estimate (``"hmt"`` with ``"LA"``/``"SA"``).
        dtype: dtype of the test vectors (the operator's), ``None`` for a plan from a size.
        device: their device (the operator's), ``None`` for a plan from a size.
    """

    recovery: str
    dim: int
    outer: int
    inner: int | None
    block_size: int
    blocks: int
    num_products: int
    noise: str = "ssrft"
    seed: int = 0
    power_iters: int = 0
    which: str = "LM"
    shift_steps: int = 0
    dtype: torch.dtype | None = None
    device: torch.device | None = None

    @property
    def streams(self) -> tuple[str, ...]:
        """Names of the test-operator streams the recovery draws from under ``seed``."""
        extra = (STREAM_SHIFT,) if self.shift_steps else ()
        return _STREAMS[self.recovery] + extra

    def test_operator(self, stream: str, rows: int) -> NoiseOperator:
        """The ``rows × D`` test operator of ``stream`` (bitwise equal for equal plans)."""
        return make_noise(self.noise, rows, self.dim, self.seed, stream)

    def describe(self) -> str:
        """One line for progress bars and logs, e.g. ``seigh[krylov, SA] products``."""
        which = "" if self.which == "LM" else f", {self.which}"
        return f"seigh[{self.recovery}{which}] products"


#: How size messages name the limit of :func:`make_plan`.
_DIM_NAME = "the operator's dimension D"


def _check_sizes(
    dim: int, outer: Any, inner: Any, recovery: str, power_iters: Any
) -> tuple[int, int | None, int]:
    outer = check_outer(outer, dim, _DIM_NAME, "D", "eigenpairs")
    power_iters = check_count("power_iters", power_iters, 0, "subspace iterations")
    if power_iters and recovery != "hmt":
        raise ValueError(
            f"power_iters={power_iters} needs recovery='hmt' (the only multi-pass recovery); "
            f"use power_iters=0 with recovery={recovery!r}"
        )
    if recovery not in _INNER_RECOVERIES:
        if inner is not None:
            raise ValueError(
                f"inner={inner!r} is only used by recovery='singlepass', 'tropp' or 'krylov'; "
                f"leave inner=None with recovery={recovery!r}"
            )
        return outer, None, power_iters
    if recovery == "krylov" and inner is not None:
        inner = check_count("inner", inner, 1, "the Krylov basis size m (products)")
        if inner < outer:
            raise ValueError(
                f"inner={inner} must be >= outer={outer}: the Krylov basis (inner columns) "
                f"holds the outer Ritz pairs; e.g. inner = 2*outer = {2 * outer}"
            )
        if inner > dim:
            raise ValueError(f"inner={inner} exceeds {_DIM_NAME}={dim}")
        return outer, inner, power_iters
    return outer, check_inner(inner, outer, dim, _DIM_NAME, "D"), power_iters


def _krylov_blocks(dim: int, inner: int, block_size: Any) -> tuple[int, int]:
    """``(blocks, width)``: the Krylov block is ``block_size``, by default
    ``min(64, ⌈inner/8⌉)`` (at least 8 blocks deep: a Krylov space needs depth);
    ``inner`` is rounded up to whole blocks."""
    if block_size is None:
        width = max(1, min(KRYLOV_BLOCK, -(-inner // KRYLOV_MIN_DEPTH)))
    else:
        width = check_block_size(block_size, inner)
    blocks = -(-inner // width)
    if blocks * width > dim:
        raise ValueError(
            f"inner={inner} in Krylov blocks of block_size={width} rounds up to "
            f"{blocks * width} columns, more than D={dim}: use inner <= {dim // width * width} "
            "or a block_size that divides inner"
        )
    return blocks, width


def _check_which(which: Any, recovery: str) -> str:
    if which not in WHICH:
        raise ValueError(
            f"which={which!r} is not one of 'LM' (largest |λ|), 'LA' (largest algebraic) "
            "or 'SA' (smallest algebraic: the most negative)"
        )
    if which != "LM" and recovery not in WHICH_RECOVERIES:
        raise ValueError(
            f"which={which!r} needs recovery='krylov' or 'hmt' (they select Rayleigh–Ritz "
            f"pairs); recovery={recovery!r} finds the largest |λ| only: use which='LM'"
        )
    return str(which)


def _dimension(op_or_dim: Any, who: str) -> tuple[int, Any]:
    if isinstance(op_or_dim, int) and not isinstance(op_or_dim, bool):
        return check_count("dim", op_or_dim, 1, "the operator's dimension D"), None
    op = check_operator(op_or_dim, who)
    if len(op.shape) != 2 or op.shape[0] != op.shape[1]:
        raise ValueError(
            f"{who} needs a square symmetric operator, got shape {tuple(op.shape)}; use "
            "curvsketch.sketch.ssvd for rectangular operators"
        )
    return int(op.shape[0]), op


def make_plan(
    op_or_dim: Any,
    outer: Any,
    inner: Any = None,
    *,
    recovery: str = "singlepass",
    noise: str = "ssrft",
    seed: int = 0,
    block_size: int | None = None,
    power_iters: int = 0,
    which: str = "LM",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    cap_to_dim: bool = False,
    who: str = "seigh",
) -> SketchPlan:
    """Validate the settings of a sketch and derive its sizes, once.

    Args:
        op_or_dim: the symmetric operator (its dimension, dtype and device are used) or
            the dimension ``D`` alone (then ``dtype``/``device`` are kept as given).
        outer, inner, recovery, noise, seed, block_size, power_iters, which, dtype, device:
            as in :func:`curvsketch.sketch.seigh`.
        cap_to_dim: the study's rules (``[sketch]`` of a configuration): ``outer`` and
            ``inner`` are capped at ``D``, ``inner`` defaults to ``2·outer`` (capped), and
            an ``inner`` is ignored for the recoveries that take none.
        who: the caller named in error messages.

    Returns:
        The frozen :class:`SketchPlan`.

    Raises:
        ValueError: a bad size, name or combination; the message names the argument and
            the fix.
        TypeError: ``op_or_dim`` is neither an operator nor an integer.
    """
    dim, op = _dimension(op_or_dim, who)
    if recovery not in RECOVERIES:
        raise ValueError(f"recovery={recovery!r} is not one of {', '.join(RECOVERIES)}")
    if cap_to_dim:
        outer = min(check_count("outer", outer, 1, "the number of eigenpairs to sketch"), dim)
        if recovery in _INNER_RECOVERIES:
            inner = None if inner is None else min(inner, dim)  # default: min(2·outer, D)
        else:
            inner = None
    outer, inner, power_iters = _check_sizes(dim, outer, inner, recovery, power_iters)
    which = _check_which(which, recovery)
    noise = check_noise(noise)
    seed = check_seed(seed)
    resolved_device: torch.device | None = None
    if op is not None:
        dtype, resolved_device = resolve_dtype_device(op, dtype, device, who)
    elif device is not None:
        resolved_device = torch.device(device)
    shift_steps = 0
    if recovery == "krylov":
        assert inner is not None
        blocks, block = _krylov_blocks(dim, inner, block_size)
        num_products = inner = blocks * block
    else:
        if recovery == "hmt" and which != "LM":
            shift_steps = min(SHIFT_STEPS, dim)
        num_products = {
            "singlepass": inner or 0,
            "tropp": outer + (inner or 0),
            "hmt": outer * (2 + power_iters) + shift_steps,
            "nystrom": outer,
        }[recovery]
        block = check_block_size(block_size, num_products)
        per_pass = inner if recovery in _CORE_RECOVERIES else outer
        assert per_pass is not None
        blocks = -(-per_pass // block)
    return SketchPlan(
        recovery=recovery,
        dim=dim,
        outer=outer,
        inner=inner,
        block_size=block,
        blocks=blocks,
        num_products=num_products,
        noise=noise,
        seed=seed,
        power_iters=power_iters,
        which=which,
        shift_steps=shift_steps,
        dtype=dtype,
        device=resolved_device,
    )


@dataclass(frozen=True)
class SvdPlan:
    """The validated settings of one sketched SVD (build with :func:`make_svd_plan`).

    Attributes:
        shape: ``(M, N)``, the operator's shape.
        outer: ``o``, the singular triplets (co-range and range sketch sizes).
        inner: ``s``, the core sketch size.
        block_size: test vectors per operator product.
        num_products: operator products, ``2·o + s``.
        noise: test-operator kind.
        seed: seed of the four test operators.
        dtype: dtype of the test vectors (the operator's).
        device: their device (the operator's).
    """

    shape: tuple[int, int]
    outer: int
    inner: int
    block_size: int
    num_products: int
    noise: str
    seed: int
    dtype: torch.dtype
    device: torch.device


def make_svd_plan(
    op: Any,
    outer: Any,
    inner: Any = None,
    *,
    noise: str = "ssrft",
    seed: int = 0,
    block_size: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> SvdPlan:
    """Validate the settings of :func:`curvsketch.sketch.ssvd` and derive its sizes, once.

    The size rules are those of the single-pass core of :func:`make_plan`
    (:func:`~curvsketch.sketch.validate.check_outer`,
    :func:`~curvsketch.sketch.validate.check_inner`) with ``min(M, N)`` in place of ``D``.

    Args:
        op: the ``M × N`` operator, already checked (its shape, dtype and device are used).
        outer, inner, noise, seed, block_size, dtype, device: as in
            :func:`curvsketch.sketch.ssvd`.

    Raises:
        ValueError: a bad size or name, or a dtype/device other than the operator's.
    """
    m, n = int(op.shape[0]), int(op.shape[1])
    small = min(m, n)
    outer = check_outer(outer, small, "min(M, N)", "min(M, N)", "singular triplets")
    inner = check_inner(inner, outer, small, "min(M, N)", "min(M, N)")
    noise = check_noise(noise)
    seed = check_seed(seed)
    dtype, resolved_device = resolve_dtype_device(op, dtype, device, "ssvd")
    num_products = 2 * outer + inner
    return SvdPlan(
        shape=(m, n),
        outer=outer,
        inner=inner,
        block_size=check_block_size(block_size, num_products),
        num_products=num_products,
        noise=noise,
        seed=seed,
        dtype=dtype,
        device=resolved_device,
    )
