"""HessianOperator and GGNOperator against dense torch.func oracles, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from curvsketch.operators import (
    GGNOperator,
    HessianOperator,
    dense_ggn,
    dense_hessian,
    dense_matrix,
)
from oracles import classification_data, oracle_ggn, oracle_hessian, small_cnn, tanh_mlp

TOL = 1e-10
HESSIAN_ENGINES = ["graph", "graph_batched", "vmap"]


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("engine", HESSIAN_ENGINES)
def test_mlp_hessian_matches_oracle(engine):
    model = tanh_mlp()
    X, y = classification_data()
    H = dense_hessian(model, F.cross_entropy, (X, y), engine=engine, block_size=17)
    assert rel(H, oracle_hessian(model, F.cross_entropy, X, y)) < TOL


@pytest.mark.parametrize("engine", HESSIAN_ENGINES)
def test_cnn_with_batchnorm_eval_and_pooling(engine):
    model = small_cnn()
    X, y = classification_data(n=24, c=4, shape=(1, 8, 8))
    model.train()  # the operator must switch to eval and restore train mode afterwards
    H = dense_hessian(model, F.cross_entropy, (X, y), engine=engine)
    assert model.training
    assert rel(H, oracle_hessian(model, F.cross_entropy, X, y)) < TOL


def test_custom_loss():
    model = tanh_mlp(sizes=(4, 5, 2))
    X, _ = classification_data(n=30, d=4)
    Y = torch.randn(30, 2, dtype=torch.float64)

    def loss_fn(out, target):  # a smooth non-standard loss
        return (torch.log1p((out - target) ** 2) + 0.1 * out**4).mean()

    H = dense_hessian(model, loss_fn, (X, Y))
    assert rel(H, oracle_hessian(model, loss_fn, X, Y)) < TOL


def test_parameter_subset_is_a_diagonal_block():
    model = tanh_mlp()
    X, y = classification_data()
    full = oracle_hessian(model, F.cross_entropy, X, y)
    sub = list(model[2].parameters())
    start = sum(p.numel() for p in model[0].parameters())
    n = sum(p.numel() for p in sub)
    H = dense_hessian(model, F.cross_entropy, (X, y), params=sub)
    assert H.shape == (n, n)
    assert rel(H, full[start : start + n, start : start + n]) < TOL


@pytest.mark.parametrize("engine", HESSIAN_ENGINES)
def test_batching_and_micro_batching_do_not_change_the_operator(engine):
    model = tanh_mlp()
    X, y = classification_data(n=37)
    V = torch.randn(sum(p.numel() for p in model.parameters()), 5, dtype=torch.float64)
    ref = HessianOperator(model, F.cross_entropy, (X, y), engine=engine) @ V
    batches = [(X[:10], y[:10]), (X[10:11], y[10:11]), (X[11:], y[11:])]
    for mbs in (None, 1, 4, 100):
        out = (
            HessianOperator(model, F.cross_entropy, batches, engine=engine, micro_batch_size=mbs)
            @ V
        )
        assert rel(out, ref) < TOL


def test_sum_reduction_matches_mean():
    model = tanh_mlp()
    X, y = classification_data()
    sum_loss = lambda o, t: F.cross_entropy(o, t, reduction="sum")  # noqa: E731
    a = dense_hessian(model, sum_loss, [(X[:13], y[:13]), (X[13:], y[13:])], reduction="sum")
    b = dense_hessian(model, F.cross_entropy, (X, y))
    assert rel(a, b) < TOL


def test_symmetry_and_vector_input():
    model = tanh_mlp()
    X, y = classification_data()
    op = HessianOperator(model, F.cross_entropy, (X, y))
    H = dense_matrix(op)
    assert float((H - H.T).norm() / H.norm()) < 1e-12
    v = torch.randn(op.shape[1], dtype=torch.float64)
    hv = op @ v
    assert hv.shape == v.shape
    assert rel(hv, H @ v) < TOL


@pytest.mark.parametrize("engine", ["graph", "vmap"])
def test_ggn_matches_jt_hl_j_and_is_psd(engine):
    model = tanh_mlp()
    X, y = classification_data()
    G = dense_ggn(model, F.cross_entropy, (X, y), engine=engine, micro_batch_size=9)
    assert rel(G, oracle_ggn(model, F.cross_entropy, X, y)) < TOL
    evals = torch.linalg.eigvalsh(G)
    assert evals.min() > -1e-12 * evals.max()


def test_ggn_of_mse_on_linear_model_equals_hessian():
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 2).double()
    X = torch.randn(20, 4, dtype=torch.float64)
    Y = torch.randn(20, 2, dtype=torch.float64)
    G = dense_ggn(model, F.mse_loss, (X, Y))
    H = dense_hessian(model, F.mse_loss, (X, Y))
    assert rel(G, H) < TOL


def test_auto_engine_measures_and_chooses():
    model = tanh_mlp()
    X, y = classification_data()
    op = HessianOperator(model, F.cross_entropy, (X, y))
    assert op.engine == "auto"
    op @ torch.randn(op.shape[1], 8, dtype=torch.float64)  # AUTO_MIN_BLOCK: a choice for good
    assert op.engine in HESSIAN_ENGINES
    assert set(op.engine_timings) == set(HESSIAN_ENGINES)
    assert op.engine_timings[op.engine] == min(op.engine_timings.values())


def test_float32_products_agree_with_float64():
    model = tanh_mlp()
    X, y = classification_data()
    H64 = oracle_hessian(model, F.cross_entropy, X, y)
    model32 = tanh_mlp().float()
    H32 = dense_hessian(model32, F.cross_entropy, (X.float(), y))
    assert H32.dtype == torch.float32
    assert rel(H32.double(), H64) < 1e-5


def test_num_products_counts_probe_and_vectors():
    model = tanh_mlp()
    X, y = classification_data()
    op = HessianOperator(model, F.cross_entropy, (X, y), engine="graph")
    op @ torch.randn(op.shape[1], 6, dtype=torch.float64)
    assert op.num_products == 6 + 2  # two probe products, once
    op @ torch.randn(op.shape[1], 6, dtype=torch.float64)
    assert op.num_products == 14


def test_to_scipy_eigsh_finds_top_eigenvalues():
    from scipy.sparse.linalg import eigsh

    model = tanh_mlp()
    X, y = classification_data()
    op = HessianOperator(model, F.cross_entropy, (X, y))
    H = dense_matrix(op)
    top = torch.linalg.eigvalsh(H).abs().sort(descending=True).values[:3]
    vals = eigsh(op.to_scipy(), k=3, which="LM", tol=1e-12)[0]
    assert torch.allclose(torch.tensor(sorted(abs(vals), reverse=True)), top, rtol=1e-8)


def test_parameter_vector_order():
    model = tanh_mlp()
    X, y = classification_data()
    op = GGNOperator(model, F.cross_entropy, (X, y))
    expected = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.equal(op.parameter_vector(), expected)
    assert op.param_names == [n for n, _ in model.named_parameters()]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_cuda_products_match_cpu(dtype, kind):
    model = small_cnn()
    X, y = classification_data(n=24, c=4, shape=(1, 8, 8))
    cls = HessianOperator if kind == "hessian" else GGNOperator
    V = torch.randn(sum(p.numel() for p in model.parameters()), 6, dtype=torch.float64)
    ref = cls(model, F.cross_entropy, (X, y)) @ V
    model_gpu = small_cnn().to("cuda", dtype)
    op = cls(model_gpu, F.cross_entropy, (X, y))  # data moved to the model's device per batch
    assert op.device.type == "cuda" and op.dtype == dtype
    out = op @ V.to("cuda", dtype)
    assert out.device.type == "cuda"
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert rel(out.double().cpu(), ref) < tol


def _full_gradient(model, loss_fn, X, y, params):
    names = {id(p): n for n, p in model.named_parameters()}
    fixed = [names[id(p)] for p in params]

    def loss(*ps):
        return loss_fn(
            torch.func.functional_call(model, dict(zip(fixed, ps, strict=True)), (X,)), y
        )

    grads = torch.func.grad(loss, argnums=tuple(range(len(params))))(*[p.detach() for p in params])
    return torch.cat([g.detach().reshape(-1) for g in grads])


@pytest.mark.parametrize("kind", [HessianOperator, GGNOperator])
def test_gradient_of_the_mean_loss_in_operator_order(kind):
    model = tanh_mlp()
    X, y = classification_data(n=37)
    batches = [(X[:10], y[:10]), (X[10:11], y[10:11]), (X[11:], y[11:])]
    op = kind(model, F.cross_entropy, batches, micro_batch_size=4)
    expected = _full_gradient(model, F.cross_entropy, X, y, list(model.parameters()))
    g = op.gradient()
    assert g.shape == (op.shape[0],) and g.dtype == op.dtype
    assert rel(g, expected) < 1e-12
    sub = list(model[2].parameters())  # a subset: the gradient w.r.t. those, in that order
    op_sub = kind(model, F.cross_entropy, (X, y), params=sub)
    assert rel(op_sub.gradient(), _full_gradient(model, F.cross_entropy, X, y, sub)) < 1e-12


def test_gradient_in_eval_mode_and_restores_training():
    model = small_cnn()
    X, y = classification_data(n=24, c=4, shape=(1, 8, 8))
    model.train()
    with pytest.warns(UserWarning, match="batch-norm"):
        g = HessianOperator(model, F.cross_entropy, (X, y)).gradient()
    assert model.training
    model.eval()
    assert rel(g, _full_gradient(model, F.cross_entropy, X, y, list(model.parameters()))) < 1e-12


def test_sum_reduction_gradient():
    model = tanh_mlp()
    X, y = classification_data()
    sum_loss = lambda o, t: F.cross_entropy(o, t, reduction="sum")  # noqa: E731
    op = HessianOperator(model, sum_loss, [(X[:13], y[:13]), (X[13:], y[13:])], reduction="sum")
    expected = _full_gradient(model, F.cross_entropy, X, y, list(model.parameters()))
    assert rel(op.gradient(), expected) < 1e-12
