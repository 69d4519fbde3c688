"""Every argument check: the error names the argument and the fix."""

from __future__ import annotations

import pytest
import torch

from curvsketch.sketch import aposteriori_error, seigh, ssvd
from curvsketch.sketch.noise import SSRFTNoise

D = 40


@pytest.fixture
def h():
    a = torch.randn(D, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return a + a.T


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"outer": 0}, ValueError, r"outer must be >= 1 \(the number of eigenpairs"),
        ({"outer": -3}, ValueError, "outer must be >= 1"),
        ({"outer": 2.5}, ValueError, "outer must be an integer"),
        ({"outer": True}, ValueError, "outer must be an integer"),
        ({"outer": 41}, ValueError, r"outer=41 exceeds the operator's dimension D=40.*outer <= 40"),
        ({"outer": 10, "inner": 9}, ValueError, r"inner=9 must be >= outer=10.*2\*outer = 20"),
        ({"outer": 10, "inner": 41}, ValueError, r"inner=41 exceeds .* D=40; cap it: .* = 40"),
        ({"outer": 10, "inner": 0}, ValueError, "inner must be >= 1"),
        ({"outer": 5, "recovery": "lanczos"}, ValueError, "recovery='lanczos' is not one of"),
        ({"outer": 5, "noise": "sparse"}, ValueError, "noise='sparse' is not a test operator"),
        ({"outer": 5, "recovery": "hmt", "inner": 10}, ValueError, "inner=10 is only used by"),
        ({"outer": 5, "power_iters": 1}, ValueError, "power_iters=1 needs recovery='hmt'"),
        (
            {"outer": 5, "recovery": "hmt", "power_iters": -1},
            ValueError,
            "power_iters must be >= 0",
        ),
        ({"outer": 5, "block_size": 0}, ValueError, "block_size must be >= 1"),
        ({"outer": 5, "seed": "x"}, ValueError, "seed must be an integer"),
        ({"outer": 5, "dtype": torch.float32}, ValueError, r"dtype=torch.float32 but op.dtype is"),
        (
            {"outer": 5, "device": "cuda"},
            ValueError,
            r"device=cuda but the operator computes on cpu",
        ),
        ({"outer": 5, "device": "meta"}, ValueError, "pass device=None"),
    ],
)
def test_seigh_argument_errors(h, kwargs, error, match):
    with pytest.raises(error, match=match):
        seigh(h, progress=False, **kwargs)


def test_seigh_accepts_matching_dtype_and_device(h):
    res = seigh(h, 5, dtype=torch.float64, device="cpu", progress=False)
    assert res.eigenvalues.dtype == torch.float64


def test_seigh_operator_errors(h):
    with pytest.raises(
        ValueError, match=r"square symmetric operator, got shape \(40, 30\); use .*ssvd"
    ):
        seigh(h[:, :30], 5, progress=False)
    with pytest.raises(
        ValueError, match=r"op\.dtype is torch\.int64; sketches run in float32 or float64"
    ):
        seigh(torch.ones(D, D, dtype=torch.int64), 5, progress=False)
    with pytest.raises(TypeError, match="seigh: op as_operator: cannot use str"):
        seigh("H", 5, progress=False)


def test_ssvd_argument_errors(counting):
    a = torch.randn(30, 20, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"outer=21 exceeds min\(M, N\)=20.*outer <= 20"):
        ssvd(a, 21, progress=False)
    with pytest.raises(ValueError, match=r"inner=25 exceeds min\(M, N\)=20; cap it"):
        ssvd(a, 10, 25, progress=False)
    with pytest.raises(ValueError, match="inner=5 must be >= outer=10"):
        ssvd(a, 10, 5, progress=False)
    with pytest.raises(ValueError, match="outer must be >= 1"):
        ssvd(a, 0, progress=False)
    with pytest.raises(ValueError, match="noise='x' is not a test operator"):
        ssvd(a, 5, noise="x", progress=False)
    with pytest.raises(ValueError, match=r"dtype=torch\.float32 but op\.dtype"):
        ssvd(a, 5, dtype=torch.float32, progress=False)
    with pytest.raises(TypeError, match=r"no adjoint product; it needs op\.rmatmul"):
        ssvd(counting(a, adjoint=False), 5, progress=False)


def test_aposteriori_argument_errors(h):
    res = seigh(h, 5, progress=False)
    with pytest.raises(ValueError, match=r"approx has shape \(30, 30\) but op has \(40, 40\)"):
        aposteriori_error(h, torch.zeros(30, 30, dtype=torch.float64), progress=False)
    with pytest.raises(ValueError, match=r"approx\.dtype torch\.float32 differs"):
        aposteriori_error(h, torch.zeros(D, D), progress=False)
    with pytest.raises(ValueError, match="num_tests must be >= 1"):
        aposteriori_error(h, res, num_tests=0, progress=False)
    with pytest.raises(ValueError, match="seed must be an integer"):
        aposteriori_error(h, res, seed=None, progress=False)


def test_ssrft_needs_at_most_d_rows():
    with pytest.raises(ValueError, match="num_rows=5 exceeds dim=4"):
        SSRFTNoise(5, 4)
