"""Random test operators addressable by ``(seed, index)``: Gaussian, Rademacher and SSRFT.

A package without circles: :mod:`.base` (the :class:`NoiseOperator` interface and the
seeding) <- :mod:`.dense` (Gaussian, Rademacher) and :mod:`.ssrft` (SSRFT, on
:mod:`curvsketch.sketch.dct`) <- this module (:func:`make_noise`, the stream names).

A *noise operator* represents an ``s × D`` random test matrix ``Ω`` whose rows are the test
vectors of a sketch (Tropp, Yurtsever, Udell, Cevher, "Streaming low-rank matrix
approximation with an application to scientific simulation", SIAM J. Sci. Comput. 41(4),
2019). It never stores ``Ω``: it hands out any block of rows ``Ω[i0:i1]``
(or the same vectors as columns) and the products ``Ω[i0:i1] @ X`` and
``Ω[i0:i1]ᵀ @ Y``.

Everything random is a function of ``(seed, stream, index)`` only, drawn on the CPU with a
``torch.Generator`` seeded from a hash of those values and then moved to the device. So
row ``i`` is the same whatever block it is requested in, on any device, in any process.
The ``stream`` names an independent test matrix under one user seed (e.g. ``"psi"`` and
``"phi"`` for the two matrices of a single-pass sketch).

* Gaussian / Rademacher: row ``i`` is drawn from its own generator seeded with
  ``hash(seed, stream, kind, i)`` (in float64, then cast, so that float32 and float64 runs
  see the same matrix up to rounding). Products generate rows in chunks and multiply each
  chunk with *all* columns of ``X`` at once, so ``Ω`` is generated once per call.
* SSRFT (:mod:`curvsketch.sketch.noise.ssrft`): a subsampled scrambled DCT, O(D log D) per
  vector and no ``s × D`` storage.
"""

from __future__ import annotations

from curvsketch.sketch.noise.base import (
    BLOCK_ELEMENTS,
    NoiseOperator,
    as_block,
    check_int,
    derive_seed,
)
from curvsketch.sketch.noise.dense import GaussianNoise, RademacherNoise
from curvsketch.sketch.noise.ssrft import SSRFTNoise

__all__ = [
    "BLOCK_ELEMENTS",
    "NOISE_KINDS",
    "STREAM_OMEGA",
    "STREAM_PHI",
    "STREAM_PSI",
    "STREAM_SHIFT",
    "GaussianNoise",
    "NoiseOperator",
    "RademacherNoise",
    "SSRFTNoise",
    "as_block",
    "check_int",
    "derive_seed",
    "make_noise",
]

#: Random streams of SEIGH's test operators: Ψ (the products), Φ (the inner sketch) and
#: the independent outer sketch Ω of ``recovery="tropp"``. One definition for every caller
#: (in-memory ``seigh`` and the store), so that equal seeds give equal test vectors.
STREAM_PSI = "seigh.psi"
STREAM_PHI = "seigh.phi"
STREAM_OMEGA = "seigh.omega"
#: The start vector of the short Lanczos run that estimates the shift of
#: ``seigh(recovery="hmt", which="LA" | "SA")`` (:mod:`curvsketch.sketch.hmt`).
STREAM_SHIFT = "seigh.shift"

#: Names accepted by :func:`make_noise` (and the ``noise=`` argument of the sketches).
NOISE_KINDS = ("gaussian", "rademacher", "ssrft")


def make_noise(
    kind: str, num_rows: int, dim: int, seed: int = 0, stream: str = "omega"
) -> NoiseOperator:
    """Build a test operator by name.

    Args:
        kind: ``"gaussian"``, ``"rademacher"`` or ``"ssrft"``.
        num_rows: ``s``, the number of test vectors.
        dim: ``D``, their length.
        seed: user seed.
        stream: name of the independent matrix under ``seed`` (e.g. ``"psi"``, ``"phi"``).

    Returns:
        The :class:`NoiseOperator`.

    Raises:
        ValueError: unknown ``kind``, or bad sizes.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise={kind!r} is not one of {list(NOISE_KINDS)}; pick one of them")
    if kind == "ssrft":
        return SSRFTNoise(num_rows, dim, seed, stream)
    dense: type[NoiseOperator] = GaussianNoise if kind == "gaussian" else RademacherNoise
    return dense(num_rows, dim, seed, stream)
