"""Attention models (``scaled_dot_product_attention``, fused fast paths) on every engine.

Oracles: ``torch.autograd.functional.hessian`` / ``jacobian`` (reverse mode, math attention
kernel) plus a central finite-difference check of first derivatives with the default
kernels; ``torch.func.hessian`` is not used, it is off by percents on attention models.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from curvsketch.operators import GGNOperator, HessianOperator, count_targets
from oracles import flat_params

DT = torch.float64


class EncoderClassifier(nn.Module):
    """Linear embedding, one ``nn.TransformerEncoderLayer``, mean pooling, a head."""

    def __init__(self, seed: int = 0, causal: bool = False) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(3, 4)
        self.enc = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(self.inp(x)).mean(1))


class MHAClassifier(nn.Module):
    """``nn.MultiheadAttention(need_weights=False)`` (the SDPA path), residual, head."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(3, 4)
        self.att = nn.MultiheadAttention(4, 2, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        a = self.att(h, h, h, need_weights=False)[0]
        return self.head(torch.tanh(h + a).mean(1))


class CausalLM(nn.Module):
    """Token and position embeddings, a causal encoder layer, logits per position."""

    def __init__(self, vocab: int = 5, seq: int = 5, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.tok = nn.Embedding(vocab, 4)
        self.pos = nn.Parameter(0.1 * torch.randn(seq, 4))
        self.enc = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, batch_first=True)
        self.head = nn.Linear(4, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(n, dtype=self.pos.dtype)
        h = self.enc(self.tok(ids) + self.pos[:n], src_mask=mask, is_causal=True)
        return self.head(h)


def _unflatten(theta, params):
    out, o = [], 0
    for p in params:
        out.append(theta[o : o + p.numel()].view_as(p))
        o += p.numel()
    return out


def _call(model, theta, X):
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())
    return torch.func.functional_call(
        model, dict(zip(names, _unflatten(theta, params), strict=True)), (X,)
    )


def autograd_hessian(model, loss_fn, X, y):
    """Dense Hessian by torch.autograd.functional.hessian (math attention kernel)."""
    model.eval()
    theta = flat_params(model.parameters())
    with sdpa_kernel(SDPBackend.MATH):
        H = torch.autograd.functional.hessian(
            lambda t: loss_fn(_call(model, t, X), y), theta, vectorize=True
        )
    return (H + H.T) / 2


def autograd_ggn(model, loss_fn, X, y):
    """Dense GGN Jᵀ H_loss J by torch.autograd.functional jacobian and hessian."""
    model.eval()
    theta = flat_params(model.parameters())
    with sdpa_kernel(SDPBackend.MATH):
        J = torch.autograd.functional.jacobian(lambda t: _call(model, t, X), theta, vectorize=True)
        out = _call(model, theta, X).detach()
        HL = torch.autograd.functional.hessian(lambda z: loss_fn(z, y), out)
    J = J.reshape(-1, theta.numel())
    return J.T @ HL.reshape(J.shape[0], J.shape[0]) @ J


def fd_hvp(model, loss_fn, X, y, v, eps=1e-5):
    """Central difference of the gradient along v (default attention kernels)."""
    model.eval()
    theta = flat_params(model.parameters())

    def grad(t):
        t = t.clone().requires_grad_(True)
        return torch.autograd.grad(loss_fn(_call(model, t, X), y), t)[0]

    return (grad(theta + eps * v) - grad(theta - eps * v)) / (2 * eps)


def fd_jvp(model, X, v, eps=1e-5):
    """Central difference of the outputs along v."""
    model.eval()
    theta = flat_params(model.parameters())
    with torch.no_grad():
        return (_call(model, theta + eps * v, X) - _call(model, theta - eps * v, X)) / (2 * eps)


def rel(a, b):
    return float((a - b).norm() / b.norm())


def seq_data(n=6, t=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, t, 3, generator=g, dtype=DT)
    return X, torch.randint(0, 2, (n,), generator=g), torch.randn(n, 2, generator=g, dtype=DT)


MODELS = {"encoder": EncoderClassifier, "mha": MHAClassifier}
LOSSES = {"ce": F.cross_entropy, "mse": F.mse_loss}
_CACHE: dict = {}


def _oracle(kind, model_name, loss_name):
    key = (kind, model_name, loss_name)
    if key not in _CACHE:
        model = MODELS[model_name]().double()
        X, y, Y = seq_data()
        target = y if loss_name == "ce" else Y
        fn = autograd_hessian if kind == "hessian" else autograd_ggn
        _CACHE[key] = fn(model, LOSSES[loss_name], X, target)
    return _CACHE[key]


def _cases(engines, slow):
    """Every (engine, model, loss); those in ``slow`` are marked slow."""
    out = []
    for e in engines:
        for m in MODELS:
            for loss in LOSSES:
                marks = (pytest.mark.slow,) if (e, m, loss) in slow else ()
                out.append(pytest.param(e, m, loss, marks=marks, id=f"{e}-{m}-{loss}"))
    return out


#: the fast suite keeps every engine on both models with cross-entropy, and MSE (the
#: loss the vmap engines failed on) on the encoder; the rest runs with -m slow.
SLOW = {(e, "mha", "mse") for e in ("graph", "graph_batched", "vmap", "auto")} | {
    (e, "encoder", "mse") for e in ("graph", "graph_batched", "auto")
}


@pytest.mark.parametrize(
    ("engine", "model_name", "loss_name"), _cases(["graph", "graph_batched", "vmap", "auto"], SLOW)
)
def test_hessian_of_attention_models(engine, model_name, loss_name):
    model = MODELS[model_name]().double()
    X, y, Y = seq_data()
    target = y if loss_name == "ce" else Y
    loss_fn = LOSSES[loss_name]
    H = _oracle("hessian", model_name, loss_name)
    V = torch.randn(H.shape[0], 3, dtype=DT, generator=torch.Generator().manual_seed(2))
    op = HessianOperator(model, loss_fn, [(X[:4], target[:4]), (X[4:], target[4:])], engine=engine)
    HV = op @ V
    assert rel(HV, H @ V) < 1e-10
    fd = fd_hvp(model, loss_fn, X, target, V[:, 0])  # an independent first-order route
    assert rel(HV[:, 0], fd) < 1e-6
    assert rel((H @ V)[:, 0], fd) < 1e-6
    if engine == "auto":
        assert op.engine_errors == {}  # every engine runs these models now


@pytest.mark.parametrize(
    ("engine", "model_name", "loss_name"), _cases(["graph", "vmap", "auto"], SLOW)
)
def test_ggn_of_attention_models(engine, model_name, loss_name):
    model = MODELS[model_name]().double()
    X, y, Y = seq_data()
    target = y if loss_name == "ce" else Y
    loss_fn = LOSSES[loss_name]
    G = _oracle("ggn", model_name, loss_name)
    V = torch.randn(G.shape[0], 3, dtype=DT, generator=torch.Generator().manual_seed(3))
    op = GGNOperator(model, loss_fn, (X, target), engine=engine, micro_batch_size=4)
    GV = op @ V
    assert rel(GV, G @ V) < 1e-10
    # finite-difference check of the oracle's J v, then of Jᵀ H_L J v through it
    theta = flat_params(model.parameters())
    out = _call(model, theta, X).detach()
    with sdpa_kernel(SDPBackend.MATH):
        J = torch.autograd.functional.jacobian(lambda t: _call(model, t, X), theta, vectorize=True)
    jv = fd_jvp(model, X, V[:, 0])
    assert rel(J.reshape(-1, theta.numel()) @ V[:, 0], jv.reshape(-1)) < 1e-6
    HL = torch.autograd.functional.hessian(lambda z: loss_fn(z, target), out)
    n = out.numel()
    hjv = HL.reshape(n, n) @ jv.reshape(-1)
    fd_g = J.reshape(n, -1).T @ hjv
    assert rel(GV[:, 0], fd_g) < 1e-6


def test_ggn_is_psd_on_a_transformer():
    model = EncoderClassifier().double()
    X, y, _ = seq_data()
    from curvsketch.operators import dense_ggn

    G = dense_ggn(model, F.cross_entropy, (X, y), engine="vmap")
    ev = torch.linalg.eigvalsh(G)
    assert ev.min() > -1e-12 * ev.max()


def test_mse_loss_on_every_vmap_engine_of_an_mlp():
    """F.mse_loss under forward-over-reverse failed ("ZeroTensors are immutable")."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    X, Y = torch.randn(10, 3, dtype=DT), torch.randn(10, 2, dtype=DT)
    V = torch.randn(sum(p.numel() for p in model.parameters()), 4, dtype=DT)
    for cls in (HessianOperator, GGNOperator):
        ref = cls(model, F.mse_loss, (X, Y), engine="graph") @ V
        assert rel(cls(model, F.mse_loss, (X, Y), engine="vmap") @ V, ref) < 1e-12


@pytest.mark.slow
def test_causal_lm_with_padding_token_mean_under_any_batching():
    """Items 1 and 2 together: an attention LM, padded targets, micro-batches of 1."""
    model = CausalLM().double()
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 5, (5, 5), generator=g)
    targets = torch.randint(0, 5, (5, 5), generator=g)
    for i, n in enumerate([5, 2, 4, 1, 3]):
        targets[i, n:] = -100

    def loss(logits, t):
        return F.cross_entropy(logits.reshape(-1, 5), t.reshape(-1), ignore_index=-100)

    H = autograd_hessian(model, loss, ids, targets)
    V = torch.randn(H.shape[0], 2, dtype=DT, generator=g)
    fd = fd_hvp(model, loss, ids, targets, V[:, 0])
    assert rel((H @ V)[:, 0], fd) < 1e-6
    for data, mbs in [
        ((ids, targets), None),
        ([(ids[:2], targets[:2]), (ids[2:], targets[2:])], 1),
    ]:
        op = HessianOperator(
            model, loss, data, micro_batch_size=mbs, num_loss_terms=count_targets()
        )
        assert rel(op @ V, H @ V) < 1e-10


def test_attention_settings_and_module_modes_are_restored():
    model = EncoderClassifier().double()
    model.train()
    model.head.eval()  # a module the user keeps in eval inside a training model
    X, y, _ = seq_data()
    op = HessianOperator(model, F.cross_entropy, (X, y), engine="graph")
    op @ torch.randn(op.shape[1], dtype=DT)
    assert model.training and model.enc.training and not model.head.training
    assert torch.backends.mha.get_fastpath_enabled()
    assert torch.backends.cuda.flash_sdp_enabled()  # the global SDPA switches are back
    op.gradient()
    assert model.training and not model.head.training
    assert torch.backends.mha.get_fastpath_enabled()


def test_gradient_of_an_attention_model_matches_autograd():
    model = MHAClassifier().double()
    X, y, _ = seq_data()
    op = HessianOperator(model, F.cross_entropy, [(X[:1], y[:1]), (X[1:], y[1:])])
    theta = flat_params(model.parameters()).requires_grad_(True)
    expected = torch.autograd.grad(F.cross_entropy(_call(model, theta, X), y), theta)[0]
    assert rel(op.gradient(), expected) < 1e-12
