"""The measurement blocks and the pure recoveries, composed as a store layer would."""

from __future__ import annotations

import math

import pytest
import torch

from curvsketch.sketch import NonFiniteMeasurementError, make_noise, seigh
from curvsketch.sketch.factors import core_solve
from curvsketch.sketch.measure import adjoint_product, apply_in_blocks, measure_block
from curvsketch.sketch.seigh import STREAM_PHI, STREAM_PSI
from curvsketch.sketch.singlepass import recover_singlepass

D = 150


def test_measure_block_matches_dense_products(spectral):
    h, _ = spectral(torch.linspace(-1, 1, D, dtype=torch.float64))
    psi = make_noise("ssrft", 40, D, 0, "psi")
    phi = make_noise("gaussian", 40, D, 0, "phi")
    y, z = measure_block(h, psi, 5, 17, inner=phi)
    cols = psi.to_dense()[5:17].T
    torch.testing.assert_close(y, h @ cols, atol=1e-13, rtol=0)
    torch.testing.assert_close(z, phi.to_dense() @ h @ cols, atol=1e-12, rtol=0)
    y2, none = measure_block(h, psi, 5, 17)
    assert none is None and torch.equal(y2, y)


def test_measure_block_adjoint():
    a = torch.randn(30, 20, dtype=torch.float64)
    ups = make_noise("gaussian", 6, 30, 0, "ups")
    xt, _ = measure_block(a, ups, 0, 6, adjoint=True)
    torch.testing.assert_close(xt, a.T @ ups.to_dense().T)


def test_blocks_in_any_order_then_recover_equals_seigh(spectral, random_signs):
    """What a resumable store does: measure blocks (any order), assemble, recover."""
    lam = torch.arange(1, D + 1, dtype=torch.float64) ** -1.5 * random_signs(D)
    h, _ = spectral(lam)
    outer, inner = 20, 40
    psi = make_noise("ssrft", inner, D, 9, STREAM_PSI)
    phi = make_noise("ssrft", inner, D, 9, STREAM_PHI)
    y = torch.empty(D, outer, dtype=torch.float64)
    z = torch.empty(inner, inner, dtype=torch.float64)
    for i0, i1 in [(30, 40), (0, 13), (13, 30)]:  # shuffled, uneven blocks
        yb, zb = measure_block(h, psi, i0, i1, inner=phi)
        z[:, i0:i1] = zb
        if i0 < outer:
            y[:, i0 : min(i1, outer)] = yb[:, : min(i1, outer) - i0]
    timings = {}
    factors = recover_singlepass(y, z, phi, psi, timings=timings)
    ref = seigh(h, outer, inner, seed=9, progress=False)
    torch.testing.assert_close(factors.values, ref.eigenvalues, atol=1e-12, rtol=1e-10)
    assert set(timings) == {"qr", "core", "eigh", "eigvec"}
    with pytest.raises(ValueError, match="do not match"):
        recover_singlepass(y, z[:10], phi, psi)


def test_core_solve_is_the_pseudo_inverse_formula():
    g = torch.Generator().manual_seed(0)
    left = torch.randn(30, 8, generator=g, dtype=torch.float64)
    right = torch.randn(25, 6, generator=g, dtype=torch.float64)
    z = torch.randn(30, 25, generator=g, dtype=torch.float64)
    ref = torch.linalg.pinv(left) @ z @ torch.linalg.pinv(right).T
    torch.testing.assert_close(core_solve(left, z, right), ref, atol=1e-12, rtol=1e-10)


def test_non_finite_block_is_named():
    bad = torch.eye(D, dtype=torch.float64)
    bad[0, 0] = math.inf
    psi = make_noise("gaussian", 10, D, 0, "psi")
    with pytest.raises(NonFiniteMeasurementError, match=r"indices \[2, 6\).*blocks before"):
        measure_block(bad, psi, 2, 6)
    with pytest.raises(NonFiniteMeasurementError) as err:
        apply_in_blocks(bad, torch.ones(D, 5, dtype=torch.float64), 2)
    assert (err.value.start, err.value.stop) == (0, 2)


def test_wrong_output_shape_is_reported():
    class Broken:
        shape, dtype, device = (D, D), torch.float64, torch.device("cpu")

        def __matmul__(self, x):
            return x[:-1]

    psi = make_noise("gaussian", 4, D, 0, "psi")
    with pytest.raises(ValueError, match=r"expected \(150, 4\)"):
        measure_block(Broken(), psi, 0, 4)


def test_adjoint_product_fallbacks():
    a = torch.randn(5, 3, dtype=torch.float64)
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(adjoint_product(a, x), a.T @ x)  # via .T

    class NoAdjoint:
        pass

    with pytest.raises(TypeError, match="no adjoint product"):
        adjoint_product(NoAdjoint(), x)
