"""make_plan: one validator for every size of a sketch."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from curvsketch.sketch import SketchPlan, make_plan, seigh


def test_sizes_and_products_per_recovery():
    p = make_plan(300, 30)
    assert (p.outer, p.inner, p.num_products, p.block_size, p.blocks) == (30, 60, 60, 60, 1)
    p = make_plan(300, 30, 70, recovery="tropp", block_size=16)
    assert (p.inner, p.num_products, p.blocks) == (70, 100, 5)
    p = make_plan(300, 30, recovery="hmt", power_iters=2)
    assert (p.inner, p.num_products, p.shift_steps) == (None, 120, 0)
    p = make_plan(300, 10, recovery="krylov")
    assert (p.block_size, p.blocks, p.inner, p.num_products) == (3, 7, 21, 21)
    assert make_plan(300, 30, recovery="nystrom").num_products == 30
    assert make_plan(300, 30, recovery="tropp").streams == ("seigh.psi", "seigh.phi", "seigh.omega")
    assert make_plan(300, 5, recovery="hmt", which="LA").streams == ("seigh.psi", "seigh.shift")


def test_plan_is_frozen_and_takes_the_operator_dtype_and_device():
    p = make_plan(torch.eye(40, dtype=torch.float32), 5)
    assert isinstance(p, SketchPlan) and p.dim == 40
    assert p.dtype == torch.float32 and p.device == torch.device("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.outer = 3  # type: ignore[misc]


def test_cap_to_dim_is_the_study_rule():
    p = make_plan(50, 80, 700, cap_to_dim=True)
    assert (p.outer, p.inner) == (50, 50)
    p = make_plan(50, 20, cap_to_dim=True)
    assert p.inner == 40
    assert make_plan(50, 20, 700, recovery="hmt", cap_to_dim=True).inner is None


def test_the_errors_of_seigh_are_the_plans():
    for kwargs, match in (
        ({"outer": 41}, "outer=41 exceeds the operator's dimension D=40"),
        ({"outer": 10, "inner": 9}, r"inner=9 must be >= outer=10"),
        ({"outer": 5, "recovery": "x"}, "recovery='x' is not one of"),
        ({"outer": 10, "inner": 25, "recovery": "krylov", "block_size": 21}, "rounds up to 42"),
    ):
        with pytest.raises(ValueError, match=match):
            make_plan(40, **kwargs)
        with pytest.raises(ValueError, match=match):
            seigh(torch.eye(40, dtype=torch.float64), progress=False, **kwargs)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        make_plan(0, 1)
