"""Engine choice (``"auto"``) and engines that cannot run a model: named, with the reason."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curvsketch.operators import EngineError, GGNOperator, HessianOperator
from curvsketch.operators.engines import ENGINES
from oracles import classification_data, oracle_hessian, tanh_mlp

DT = torch.float64


class Square(torch.autograd.Function):
    """x² without ``setup_context``: fine for autograd, refused by torch.func transforms."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class SquareNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(6, 4)
        self.b = nn.Linear(4, 3)

    def forward(self, x):
        return self.b(Square.apply(self.a(x)))


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("cls", [HessianOperator, GGNOperator])
def test_explicit_engine_that_cannot_run_the_model_is_named(cls):
    X, y = classification_data()
    op = cls(SquareNet().double(), F.cross_entropy, (X, y), engine="vmap")
    with pytest.raises(EngineError, match=r"engine 'vmap' cannot compute .* setup_context") as ei:
        op @ torch.randn(op.shape[1], 2, dtype=DT)
    err = ei.value
    assert err.engine == "vmap" and "graph" in err.working
    assert "engine='graph'" in str(err) and "engine='auto'" in str(err)
    assert isinstance(err.__cause__, RuntimeError)


@pytest.mark.parametrize("cls", [HessianOperator, GGNOperator])
def test_auto_reports_engines_that_fail(cls):
    model = SquareNet().double()
    X, y = classification_data()
    V = torch.randn(sum(p.numel() for p in model.parameters()), 5, dtype=DT)
    op = cls(model, F.cross_entropy, (X, y))
    out = op @ V
    assert op.engine != "vmap"
    assert set(op.engine_errors) == {"vmap"} and "setup_context" in op.engine_errors["vmap"]
    assert op.engine_timings["vmap"] != op.engine_timings["vmap"]  # nan
    assert "engine_errors=['vmap']" in repr(op)
    assert rel(out, cls(model, F.cross_entropy, (X, y), engine="graph") @ V) < 1e-12


@pytest.mark.parametrize("engine", ["graph", "vmap", "auto"])
def test_a_model_error_is_not_blamed_on_the_engine(engine):
    X, y = classification_data(d=5)  # the model takes 6 features
    op = HessianOperator(tanh_mlp(), F.cross_entropy, (X, y), engine=engine)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as ei:
        op @ torch.randn(op.shape[1], dtype=DT)
    assert not isinstance(ei.value, EngineError)


@pytest.mark.parametrize("m", [1, 2, 12])
def test_auto_reuses_the_timed_products(monkeypatch, m):
    """Choosing costs no extra vectors on the data once the block has a row per engine:
    every row of the first micro-batch is computed once, by whichever engine timed it (the
    old chooser computed a 4-vector warm-up and the whole block once per engine)."""
    rows = {"n": 0}
    for name, fn in list(ENGINES["hessian"].items()):

        def counted(problem, mb, V, fn=fn):
            rows["n"] += V.shape[0]
            return fn(problem, mb, V)

        monkeypatch.setitem(ENGINES["hessian"], name, counted)
    model = tanh_mlp()
    X, y = classification_data()
    op = HessianOperator(model, F.cross_entropy, [(X[:25], y[:25]), (X[25:], y[25:])])
    V = torch.randn(op.shape[1], m, dtype=DT)
    out = op @ V
    n_engines = len(ENGINES["hessian"])
    first_mb = max(m, n_engines)  # with fewer rows than engines, each engine times one row
    warm_up = n_engines  # one vector each on a 2-sample slice, untimed
    # + the second micro-batch + the determinism probe (2 passes x 2 micro-batches)
    assert rows["n"] == warm_up + first_mb + m + 2 * 2
    assert rel(out, oracle_hessian(model, F.cross_entropy, X, y) @ V) < 1e-12


def test_auto_chooses_for_good_only_on_a_real_block():
    """seigh's symmetry check and a store's probe multiply 1-2 vectors first: the choice
    made there is provisional, the next (wider) block is timed again, and both products
    stay exact."""
    X, y = classification_data()
    model = tanh_mlp().double()
    op = HessianOperator(model, F.cross_entropy, (X, y))
    H = oracle_hessian(model, F.cross_entropy, X, y)
    gen = torch.Generator().manual_seed(0)
    V2 = torch.randn(op.shape[1], 2, generator=gen, dtype=DT)
    assert rel(op @ V2, H @ V2) < 1e-12
    assert op.engine == "auto" and op.engine_timings  # timed, but not decided
    V16 = torch.randn(op.shape[1], 16, generator=gen, dtype=DT)
    assert rel(op @ V16, H @ V16) < 1e-12
    assert op.engine in ENGINES["hessian"]
