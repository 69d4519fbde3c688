"""The probe product of a run identity: a small digest of ``H v`` for a fixed ``v``.

Hashes of the parameters and the data (:func:`curvsketch.store.fingerprint`) cannot see
everything that makes an operator: the architecture (``tanh`` or ``relu`` with the same
weights), the loss (label smoothing), a model's buffers, code. One product ``H v`` with a
fixed vector ``v`` does: it changes whenever the operator does, except for operators that
agree on ``v`` (a measure-zero event for a random ``v``). The store keeps only a digest of
it, ``‖Hv‖``, ``vᵀHv`` and :data:`NUM_PROJECTIONS` projections ``w_jᵀHv``, with ``v`` and
the ``w_j`` unit-norm Rademacher vectors (entries ``±1/√D``) — a probing idea as in
Hutchinson's trace estimator (Hutchinson, Commun. Stat. Simul. Comput. 18(3), 1989) and
the randomized checks of Freivalds (1977).

The vectors are a pure function of ``(stream, index)`` (SplitMix64, Steele, Lea, Flood,
"Fast splittable pseudorandom number generators", OOPSLA 2014), computed in numpy integer
arithmetic, so they are the same on every machine, device and library version. Digests
are compared to a rounding tolerance, not bit for bit: every entry is at most ``‖Hv‖`` in
magnitude, and two digests agree when each entry differs by at most
``rtol · max(‖Hv‖, ‖Hv'‖)`` (:func:`probe_differences`), with ``rtol`` the operator's
``determinism_rtol`` if it has one, else :data:`DEFAULT_RTOL` of its dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "DEFAULT_RTOL",
    "NUM_PROJECTIONS",
    "probe_differences",
    "probe_digest",
    "rademacher",
]

#: Projections ``w_jᵀHv`` kept besides ``‖Hv‖`` and ``vᵀHv``.
NUM_PROJECTIONS = 3
#: Relative tolerance of a digest comparison, by dtype (about 10³ roundings).
DEFAULT_RTOL = {"float64": 1e-9, "float32": 1e-4, "bfloat16": 1e-2, "float16": 1e-2}
#: Rows generated and reduced at once (memory ~ 40 bytes per row; ``v`` and one byte per
#: row of signs are kept whole).
ROWS = 1 << 20
_SEED = 0x43757276_536B6574  # "CurvSket"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _bits(start: int, stop: int) -> np.ndarray:
    """The top four bits of SplitMix64 of the indices ``[start, stop)`` (uint8, 0..15):
    bit 3 gives ``v``, bits 2..0 the ``w_j`` — one hash per entry for all four vectors."""
    with np.errstate(over="ignore"):
        keyed = np.arange(start, stop, dtype=np.uint64) ^ np.uint64(_SEED)
        return (_splitmix64(keyed) >> np.uint64(60)).astype(np.uint8)


def _signs(bits: np.ndarray, stream: int) -> np.ndarray:
    return 1.0 - 2.0 * ((bits >> np.uint8(3 - stream)) & np.uint8(1)).astype(np.float64)


def _sign_matrix(bits: np.ndarray) -> np.ndarray:
    """``[v, w_1, …]`` signs of a chunk as one ``(rows, 1 + NUM_PROJECTIONS)`` float64 array."""
    shifts = np.arange(3, 2 - NUM_PROJECTIONS, -1, dtype=np.uint8)
    return 1.0 - 2.0 * ((bits[:, None] >> shifts) & np.uint8(1)).astype(np.float64)


def rademacher(stream: int, start: int, stop: int) -> np.ndarray:
    """Entries ``[start, stop)`` of the ``±1`` probe vector ``stream`` (float64).

    Args:
        stream: 0 for ``v``, ``j`` in ``1..NUM_PROJECTIONS`` for ``w_j``.
        start: first index.
        stop: one past the last.
    """
    if not 0 <= stream <= NUM_PROJECTIONS:
        raise ValueError(f"stream must be in [0, {NUM_PROJECTIONS}], got {stream}")
    return _signs(_bits(start, stop), stream)


def _rtol(op: Any, dtype: str) -> float:
    rtol = getattr(op, "determinism_rtol", None)
    if isinstance(rtol, int | float) and not isinstance(rtol, bool) and rtol > 0:
        return float(rtol)
    return DEFAULT_RTOL.get(dtype, 1e-2)


def probe_digest(op: Any) -> dict[str, Any]:
    """One product ``H v`` of ``op`` and its digest (see the module docstring).

    Args:
        op: a square operator (``.shape``, ``.dtype``, ``.device``, ``@`` on ``(D, 1)``).

    Returns:
        ``{"norm": ‖Hv‖, "vhv": vᵀHv, "proj": [w_jᵀHv], "rtol": tolerance}``, floats.

    Raises:
        FloatingPointError: the product is not finite.
    """
    dim = int(op.shape[0])
    scale = 1.0 / np.sqrt(dim)
    bits = np.empty(dim, dtype=np.uint8)  # D bytes, kept for the digest
    v = torch.empty(dim, dtype=op.dtype)
    for r0 in range(0, dim, ROWS):
        r1 = min(dim, r0 + ROWS)
        bits[r0:r1] = _bits(r0, r1)
        v[r0:r1] = torch.from_numpy(_signs(bits[r0:r1], 0) * scale)
    hv = op @ v.to(op.device).reshape(dim, 1)
    if not isinstance(hv, torch.Tensor) or tuple(hv.shape) != (dim, 1):
        got = tuple(hv.shape) if isinstance(hv, torch.Tensor) else type(hv).__name__
        raise ValueError(f"{type(op).__name__} returned {got} for a ({dim}, 1) probe block")
    hv = hv.detach().reshape(-1)
    sums = np.zeros(2 + NUM_PROJECTIONS)
    for r0 in range(0, dim, ROWS):
        r1 = min(dim, r0 + ROWS)
        part = hv[r0:r1].to("cpu", torch.float64).numpy()
        sums[0] += float(part @ part)
        sums[1:] += part @ _sign_matrix(bits[r0:r1])
    if not np.isfinite(sums).all():
        raise FloatingPointError(
            f"the probe product H·v of the run identity is not finite ({type(op).__name__}); "
            "check the operator (e.g. a diverged model or a loss that overflows in this dtype)"
        )
    dtype = str(op.dtype).replace("torch.", "")
    return {
        "norm": float(np.sqrt(sums[0])),
        "vhv": float(sums[1] * scale),
        "proj": [float(x * scale) for x in sums[2:]],
        "rtol": _rtol(op, dtype),
    }


def probe_differences(stored: Any, mine: Any) -> str | None:
    """Why two probe digests differ beyond rounding, or ``None`` when they agree.

    Args:
        stored: the store's digest (or ``None``: no probe recorded).
        mine: this run's digest (or ``None``).
    """
    if stored is None and mine is None:
        return None
    if not isinstance(stored, dict) or not isinstance(mine, dict):
        return f"{_short(stored)} (store) != {_short(mine)} (this run)"
    rtol = max(float(stored.get("rtol", 0.0)), float(mine.get("rtol", 0.0)))
    a, b = _entries(stored), _entries(mine)
    if a is None or b is None or len(a) != len(b):
        return f"{_short(stored)} (store) != {_short(mine)} (this run)"
    scale = max(abs(a[0]), abs(b[0]))
    worst = float(np.max(np.abs(np.subtract(a, b))))
    if worst <= rtol * scale + np.finfo(np.float64).tiny:
        return None
    rel = worst / scale if scale > 0 else float("inf")
    return (
        f"‖Hv‖ {a[0]:.6g}, vᵀHv {a[1]:.6g} (store) != ‖Hv‖ {b[0]:.6g}, vᵀHv {b[1]:.6g} "
        f"(this run): the products H·v of the fixed probe vector differ by {rel:.2g} "
        f"relative > rtol {rtol:.0e}, so the operator is another one (another model, "
        "activation, loss, loss settings or data)"
    )


def _entries(d: dict[str, Any]) -> list[float] | None:
    try:
        return [float(d["norm"]), float(d["vhv"]), *(float(x) for x in d["proj"])]
    except (KeyError, TypeError, ValueError):
        return None


def _short(d: Any) -> str:
    if not isinstance(d, dict):
        return "no probe" if d is None else repr(d)
    return f"‖Hv‖ {d.get('norm')!r}"
