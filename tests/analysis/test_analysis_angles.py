"""Principal angles and Grassmann metrics: geometry, references, masks, accuracy, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis._helpers import (
    F64,
    Factored,
    factored_orth,
    one_hot,
    rand_mask,
    rand_orth,
    rand_rotation,
    reference_metrics,
)
from curvsketch.analysis import (
    DISTANCE_KEYS,
    METRIC_KEYS,
    grassmann_metrics,
    overlap,
    principal_angles,
)
from curvsketch.analysis.grassmann import distance_maxima, metrics_from_angles

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def dims(draw, max_D: int = 24, half: bool = False):
    """(D, k, seed) with 1 ≤ k ≤ D (k ≤ D/2 when ``half``)."""
    D = draw(st.integers(2, max_D))
    k = draw(st.integers(1, D // 2 if half else D))
    return D, k, draw(st.integers(0, 10_000))


def assert_metrics_close(got: dict, want: dict, atol: float) -> None:
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=atol), key


def test_keys_and_maxima() -> None:
    out = grassmann_metrics(rand_orth(10, 3, 0), rand_orth(10, 3, 1))
    assert tuple(out) == METRIC_KEYS
    assert all(isinstance(v, float) for v in out.values())
    assert distance_maxima(4) == pytest.approx(
        {
            "geodesic": math.pi,
            "chordal_2": math.sqrt(2),
            "chordal_f": math.sqrt(8),
            "projection_2": 1.0,
            "projection_f": 2.0,
            "fubini_study": math.pi / 2,
        }
    )


@SETTINGS
@given(dims(half=True))
def test_agrees_with_dense_svd_reference(case) -> None:
    D, k, seed = case
    A, B = rand_orth(D, k, seed), rand_orth(D, k, seed + 1)
    assert_metrics_close(grassmann_metrics(A, B), reference_metrics(A, B), 1e-10)


@SETTINGS
@given(dims(), st.integers(1, 24))
def test_unequal_k_against_reference(case, k2) -> None:
    D, k, seed = case
    k2 = min(k2, D)
    A, B = rand_orth(D, k, seed), rand_orth(D, k2, seed + 1)
    theta = principal_angles(A, B)
    assert theta.numel() == min(k, k2)
    cos = torch.linalg.svdvals(A.T @ B)[: min(k, k2)]
    # Compare cosines (well conditioned everywhere) and forced intersections (angle 0).
    assert torch.allclose(torch.cos(theta), cos, atol=1e-12)
    n_forced = max(0, k + k2 - D)
    assert bool((theta[:n_forced] <= 1e-12).all())


@SETTINGS
@given(dims())
def test_invariant_to_right_rotations_and_symmetric(case) -> None:
    D, k, seed = case
    A, B = rand_orth(D, k, seed), rand_orth(D, k, seed + 1)
    base = grassmann_metrics(A, B)
    rotated = grassmann_metrics(A @ rand_rotation(k, seed), B @ rand_rotation(k, seed + 7))
    swapped = grassmann_metrics(B, A)
    assert_metrics_close(rotated, base, 1e-10)
    assert_metrics_close(swapped, base, 1e-10)


@SETTINGS
@given(dims())
def test_identical_spans(case) -> None:
    D, k, seed = case
    A = rand_orth(D, k, seed)
    out = grassmann_metrics(A, A @ rand_rotation(k, seed))
    for key in DISTANCE_KEYS:
        assert out[key] <= 1e-12, key
        assert out[f"{key}_sim"] == pytest.approx(1.0, abs=1e-12)
    assert out["overlap"] == pytest.approx(1.0, abs=1e-12)


@SETTINGS
@given(dims(half=True))
def test_orthogonal_spans_are_maximally_apart(case) -> None:
    D, k, seed = case
    Q = rand_orth(D, 2 * k, seed)
    out = grassmann_metrics(Q[:, :k], Q[:, k:])
    for key, top in distance_maxima(k).items():
        assert out[key] == pytest.approx(top, abs=1e-12), key
        assert out[f"{key}_sim"] == pytest.approx(0.0, abs=1e-12)
    assert out["overlap"] == pytest.approx(0.0, abs=1e-12)


@SETTINGS
@given(dims())
def test_overlap_identity_with_projection_f(case) -> None:
    D, k, seed = case
    out = grassmann_metrics(rand_orth(D, k, seed), rand_orth(D, k, seed + 1))
    assert out["overlap"] == pytest.approx(1 - out["projection_f"] ** 2 / k, abs=1e-12)
    assert overlap(rand_orth(D, k, seed), rand_orth(D, k, seed + 1)) == pytest.approx(
        out["overlap"], abs=1e-12
    )


@SETTINGS
@given(dims(), st.integers(1, 24), st.sampled_from(["left", "right", "both"]))
def test_masks_equal_dense_one_hot(case, k2, side) -> None:
    D, k, seed = case
    k2 = min(k2, D)
    A, B = rand_orth(D, k, seed), rand_orth(D, k2, seed + 1)
    SA, SB = rand_mask(D, k, seed + 2), rand_mask(D, k2, seed + 3)
    if side in ("left", "both"):
        A_in, A_dense = SA, one_hot(SA, D)
    else:
        A_in, A_dense = A, A
    B_in, B_dense = (SB, one_hot(SB, D)) if side in ("right", "both") else (B, B)
    got = grassmann_metrics(A_in, B_in, allow_unequal=True)  # k and k2 may differ
    want = grassmann_metrics(A_dense, B_dense, allow_unequal=True)
    assert_metrics_close(got, want, 1e-10)
    assert overlap(A_in, B_in) == pytest.approx(want["overlap"], abs=1e-10)
    assert torch.allclose(
        principal_angles(A_in, B_in), principal_angles(A_dense, B_dense), atol=1e-10
    )


def test_mask_mask_needs_no_D_and_counts_shared_indices() -> None:
    a = torch.tensor([10**9, 5, 7, 3])
    b = torch.tensor([7, 10**9, 11])
    theta = principal_angles(a, b)
    assert theta.dtype == F64
    assert theta.tolist() == [0.0, 0.0, math.pi / 2]
    assert overlap(a, b) == pytest.approx(2 / 3)


def test_small_angles_keep_relative_accuracy() -> None:
    D, k = 40, 5
    Q = rand_orth(D, 2 * k, 3)
    A, A_perp = Q[:, :k], Q[:, k:]
    want = torch.tensor([1e-12, 1e-9, 3e-9, 1e-6, 0.9], dtype=F64)
    R = rand_rotation(k, 4)
    B = (A * torch.cos(want) + A_perp * torch.sin(want)) @ R
    got = principal_angles(A, B)
    # Relative accuracy down to ~1e-9; below that the absolute floor is ~eps·‖B‖ (the
    # rounding of B itself), still ~1e-16 rather than the ~1e-8 of arccos.
    assert torch.allclose(got[1:], want[1:], rtol=1e-6, atol=0)
    assert abs(float(got[0] - want[0])) < 1e-15
    out = grassmann_metrics(A, B)
    assert out["geodesic"] == pytest.approx(float(want.norm()), rel=1e-9)
    assert out["projection_f"] == pytest.approx(float(torch.sin(want).norm()), rel=1e-9)
    # All tiny: Fubini–Study ≈ ‖θ‖ for small angles; the cosine route would give 0 or 1e-8.
    tiny = torch.tensor([1e-9, 2e-9], dtype=F64)
    B2 = A[:, :2] * torch.cos(tiny) + A_perp[:, :2] * torch.sin(tiny)
    fs = grassmann_metrics(A[:, :2], B2)["fubini_study"]
    assert fs == pytest.approx(float(tiny.norm()), rel=1e-6)


def test_small_angles_against_mask() -> None:
    D = 30
    S = torch.tensor([3, 8, 15, 22])
    eps = torch.tensor([1e-10, 2e-9, 5e-8, 1e-3], dtype=F64)
    others = torch.tensor([0, 1, 2, 4])
    A = one_hot(S, D) * torch.cos(eps) + one_hot(others, D) * torch.sin(eps)
    assert torch.allclose(principal_angles(A, S), eps, rtol=1e-6, atol=0)
    assert torch.allclose(principal_angles(S, A), eps, rtol=1e-6, atol=0)


@pytest.mark.parametrize("block_rows", [None, 7, 1000])
def test_factored_bases_equal_dense(block_rows) -> None:
    D = 53
    A, B = factored_orth(D, 6, 0), factored_orth(D, 4, 1)
    S = rand_mask(D, 5, 2)
    for x, y in [(A, B), (B, A), (A, S), (S, B), (A, A.dense() @ rand_rotation(6, 0))]:
        xd = x.dense() if isinstance(x, Factored) else x
        yd = y.dense() if isinstance(y, Factored) else y
        got = principal_angles(x, y, block_rows=block_rows)
        assert torch.allclose(got, principal_angles(xd, yd), atol=1e-10)
        # unequal dimensions (6, 4, 5 columns): asked for explicitly
        got = grassmann_metrics(x, y, block_rows=block_rows, allow_unequal=True)
        assert_metrics_close(got, grassmann_metrics(xd, yd, allow_unequal=True), 1e-10)


def test_orthonormalize() -> None:
    D, k = 20, 4
    g = torch.Generator().manual_seed(0)
    X = torch.randn(D, k, generator=g, dtype=F64)
    Y = rand_orth(D, k, 1)
    want = principal_angles(torch.linalg.qr(X).Q, Y)
    assert torch.allclose(principal_angles(X, Y, orthonormalize=True), want, atol=1e-12)
    fac = Factored(X)
    got = principal_angles(fac, Y, orthonormalize=True, block_rows=6)
    assert torch.allclose(got, want, atol=1e-10)


def test_validation_messages() -> None:
    D, k = 12, 3
    A = rand_orth(D, k, 0)
    with pytest.raises(ValueError, match=r"'B' is not orthonormal.*orthonormalize=True"):
        principal_angles(A, 2 * A)
    with pytest.raises(ValueError, match=r"'A' is not orthonormal"):
        grassmann_metrics(Factored(2 * A), A)
    with pytest.raises(ValueError, match=r"'A' has more columns"):
        principal_angles(torch.eye(3, 5, dtype=F64), torch.eye(3, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"same number of rows"):
        principal_angles(A, rand_orth(D + 1, k, 1))
    with pytest.raises(ValueError, match=r"'B' contains duplicate indices.*torch.unique"):
        principal_angles(A, torch.tensor([1, 2, 2]))
    with pytest.raises(ValueError, match=r"'A' contains index 12, out of range for D = 12"):
        overlap(torch.tensor([0, 12]), A)
    with pytest.raises(ValueError, match=r"'B' contains a negative index"):
        overlap(A, torch.tensor([-1, 0]))
    with pytest.raises(TypeError, match=r"'B' is a boolean tensor.*nonzero"):
        overlap(A, torch.ones(D, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"'A' is empty"):
        overlap(torch.tensor([], dtype=torch.long), A)
    with pytest.raises(TypeError, match=r"'A' must be a \(D, o\) torch.Tensor"):
        overlap([[1.0]], A)
    with pytest.raises(TypeError, match=r"'B' must be a real floating-point tensor"):
        overlap(A, torch.ones(D, k, dtype=torch.long))
    with pytest.raises(ValueError, match=r"rank-deficient"):
        principal_angles(torch.ones(D, 2, dtype=F64), A, orthonormalize=True)
    # A tolerance that admits the input:
    noisy = A + 1e-6
    principal_angles(noisy, A, atol=1e-4)
    principal_angles(noisy, A, check=False)


def test_float32_default_tolerance() -> None:
    A, B = rand_orth(500, 20, 0).float(), rand_orth(500, 20, 1).float()
    theta = principal_angles(A, B)
    assert theta.dtype == torch.float32
    ref = principal_angles(A.double(), B.double())
    assert torch.allclose(theta.double(), ref, atol=1e-5)
    # Orthogonal float32 spans: arccos(0) rounds above π/2 in float32; still maximal.
    Q = rand_orth(50, 6, 2).float()
    out = grassmann_metrics(Q[:, :3], Q[:, 3:])
    assert out["geodesic_sim"] == pytest.approx(0.0, abs=1e-6)


def test_metrics_from_angles_validation() -> None:
    with pytest.raises(ValueError, match="'theta'"):
        metrics_from_angles(torch.tensor([2.0]))
    with pytest.raises(ValueError, match="'theta'"):
        metrics_from_angles(torch.tensor([]))
