"""The symmetry check of ``seigh``: non-symmetric operators are refused before sketching."""

from __future__ import annotations

import math

import pytest
import torch

from curvsketch.sketch import (
    RECOVERIES,
    SYMMETRY_PRODUCTS,
    AsymmetricOperatorError,
    check_symmetric,
    seigh,
)
from curvsketch.sketch.symmetry import symmetry_tolerance

D = 120


def antisymmetric(dim: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    return (a - a.T) / 2


def nonsymmetric(spectral, strength: float, seed: int = 0) -> torch.Tensor:
    """``S + strength·‖S‖_F·A/‖A‖_F``: a symmetric part plus a relative antisymmetric part."""
    s, _ = spectral(torch.linspace(-3, 5, D, dtype=torch.float64), seed=seed)
    a = antisymmetric(D, seed)
    return s + strength * s.norm() * a / a.norm()


@pytest.mark.parametrize("recovery", RECOVERIES)
def test_every_recovery_refuses_a_nonsymmetric_operator(spectral, counting, recovery):
    # Before: accepted, and each recovery returned a different wrong answer.
    h = nonsymmetric(spectral, 0.5).abs() if recovery == "nystrom" else nonsymmetric(spectral, 0.5)
    op = counting(h)
    with pytest.raises(AsymmetricOperatorError) as info:
        seigh(op, 10, recovery=recovery, progress=False)
    message = str(info.value)
    assert "not symmetric" in message and "CountingOperator" in message and "D=120" in message
    assert "ssvd" in message and "check_symmetry=False" in message
    assert info.value.asymmetry > info.value.tolerance
    assert op.products == SYMMETRY_PRODUCTS and op.calls == 1  # nothing was sketched


def test_store_path_is_checked_before_any_block(spectral, counting, tmp_path):
    op = counting(nonsymmetric(spectral, 0.5))
    with pytest.raises(AsymmetricOperatorError):
        seigh(op, 10, 20, store=tmp_path / "s", progress=False)
    assert op.products == SYMMETRY_PRODUCTS
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_symmetric_operators_pass_with_a_wide_margin(spectral, dtype):
    for seed in range(5):
        lam = torch.randn(D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        h, _ = spectral(lam**3, seed=seed)
        asym = check_symmetric(h.to(dtype), "test")
        # rounding only: about eps, far below the tolerance
        assert asym <= 100 * torch.finfo(dtype).eps < symmetry_tolerance(dtype, D) / 10


def test_tolerance_and_measured_asymmetry_scale(spectral):
    assert symmetry_tolerance(torch.float64, 100) == pytest.approx(
        math.sqrt(2.220446049250313e-16) + 10 * 2.220446049250313e-16
    )
    assert symmetry_tolerance(torch.float32, 10**8) > symmetry_tolerance(torch.float32, 100)
    # a relative antisymmetric part of 1 reads about 1/√D (times |N(0,1)|), 1e-3 about 1e-3/√D
    strong = check_symmetric(nonsymmetric(spectral, 1.0), "test", rtol=1.0)
    weak = check_symmetric(nonsymmetric(spectral, 1e-3), "test", rtol=1.0)
    assert 0.01 / math.sqrt(D) < strong < 3 / math.sqrt(D)
    assert 0.5e-3 * strong < weak < 2e-3 * strong  # linear in the antisymmetric part


def test_opt_out_and_custom_tolerance(spectral, counting):
    h = nonsymmetric(spectral, 1e-3)
    op = counting(h)
    res = seigh(op, 10, check_symmetry=False, progress=False)
    assert op.products == res.num_products == 20  # no check products
    seigh(h, 10, symmetry_rtol=1e-2, progress=False)  # tolerated explicitly
    with pytest.raises(AsymmetricOperatorError, match="symmetry_rtol"):
        seigh(h, 10, progress=False)
    with pytest.raises(ValueError, match="symmetry_rtol must be a positive number"):
        seigh(h, 10, symmetry_rtol=0.0, progress=False)
    with pytest.raises(ValueError, match="check_symmetry must be True or False"):
        seigh(h, 10, check_symmetry="yes", progress=False)


def test_check_honours_block_size_one(spectral, counting):
    h, _ = spectral(torch.linspace(1, 2, D, dtype=torch.float64))
    op = counting(h)
    seigh(op, 5, block_size=1, progress=False)
    assert max(op.widths) == 1 and op.products == 10 + SYMMETRY_PRODUCTS


def test_zero_and_tiny_operators():
    assert check_symmetric(torch.zeros(5, 5, dtype=torch.float64), "test") == 0.0
    assert check_symmetric(torch.ones(1, 1, dtype=torch.float64), "test") == 0.0


def test_measure_alone_is_checked_too(spectral, counting, tmp_path):
    # `measure` is what workers and `curvsketch measure` call without `seigh`: it checks
    # before its first block too, and writes nothing for a non-symmetric operator.
    from curvsketch.sketch import measure

    op = counting(nonsymmetric(spectral, 0.5))
    with pytest.raises(AsymmetricOperatorError, match="measure"):
        measure(op, 10, 20, store=str(tmp_path / "st"), block_size=5, progress=False)
    assert op.widths == [SYMMETRY_PRODUCTS]
    assert not (tmp_path / "st" / "done").exists() or not any((tmp_path / "st" / "done").iterdir())
    sym = counting(nonsymmetric(spectral, 0.0))
    measure(sym, 10, 20, store=str(tmp_path / "ok"), block_size=5, progress=False)
    assert sym.widths[0] == SYMMETRY_PRODUCTS and sum(sym.widths[1:]) == 20
