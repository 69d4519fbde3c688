"""Every guard of the curvature operators fails early with a message that names the fix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curvsketch.operators import HessianOperator, NonDeterminismError, dense_hessian, dense_matrix
from oracles import classification_data, tanh_mlp


def _op(**kw):
    model = kw.pop("model", tanh_mlp())
    data = kw.pop("data", classification_data())
    return HessianOperator(model, F.cross_entropy, data, **kw)


class AlwaysDropout(nn.Module):
    def forward(self, x):
        return F.dropout(x, 0.5, training=True)  # ignores eval mode


def test_nondeterministic_model_is_detected_before_the_block():
    model = nn.Sequential(nn.Linear(6, 8), AlwaysDropout(), nn.Tanh(), nn.Linear(8, 3)).double()
    op = _op(model=model)
    with pytest.raises(NonDeterminismError, match="dropout"):
        op @ torch.randn(op.shape[1], 4, dtype=torch.float64)
    assert op.num_products == 2  # the probe only: the block itself was never computed


class ShufflingLoader:
    """Re-iterable data whose samples change on every pass (random augmentation)."""

    def __init__(self, X, y):
        self.X, self.y, self.calls = X, y, 0

    def __iter__(self):
        self.calls += 1
        g = torch.Generator().manual_seed(self.calls)
        yield self.X + 0.1 * torch.randn(self.X.shape, generator=g, dtype=self.X.dtype), self.y


def test_random_augmentation_is_detected():
    X, y = classification_data()
    op = _op(data=ShufflingLoader(X, y))
    with pytest.raises(NonDeterminismError, match="augmentation"):
        op @ torch.randn(op.shape[1], dtype=torch.float64)


def test_determinism_check_can_be_disabled():
    X, y = classification_data()
    op = _op(data=ShufflingLoader(X, y), check_determinism=False)
    assert torch.isfinite(op @ torch.randn(op.shape[1], dtype=torch.float64)).all()


def test_empty_data():
    X, y = classification_data()
    with pytest.raises(ValueError, match="no samples"):
        _op(data=[])
    with pytest.raises(ValueError, match="no samples"):
        _op(data=(X[:0], y[:0]))


def test_one_shot_iterator_is_refused():
    X, y = classification_data()
    with pytest.raises(TypeError, match="one-shot iterator"):
        _op(data=((X, y) for _ in range(2)))


def test_bad_batches():
    X, y = classification_data()
    with pytest.raises(ValueError, match=r"batch 1 must be an \(inputs, targets\) pair"):
        _op(data=[(X, y), X])
    with pytest.raises(ValueError, match="40 inputs but 39 targets"):
        _op(data=[(X, y[:39])])


def test_non_scalar_loss():
    X, y = classification_data()
    op = HessianOperator(tanh_mlp(), lambda o, t: F.cross_entropy(o, t, reduction="none"), (X, y))
    with pytest.raises(ValueError, match="scalar"):
        op @ torch.randn(op.shape[1], dtype=torch.float64)


def test_no_trainable_parameters():
    model = tanh_mlp()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        _op(model=model)


def test_foreign_parameter_subset():
    other = tanh_mlp(seed=3)
    with pytest.raises(ValueError, match="not a parameter of the model"):
        _op(params=list(other.parameters()))


@pytest.mark.parametrize("engine", ["graph", "vmap"])
def test_non_finite_loss_names_the_batch(engine):
    X, y = classification_data()
    X2 = X.clone()
    X2[25, 0] = float("nan")
    op = _op(data=[(X[:20], y[:20]), (X2[20:], y[20:])], engine=engine, check_determinism=False)
    with pytest.raises(FloatingPointError, match=r"batch 1, samples \[20:40\)"):
        op @ torch.randn(op.shape[1], dtype=torch.float64)


def test_wrong_vector_shape_dtype_device():
    op = _op()
    D = op.shape[1]
    with pytest.raises(ValueError, match=rf"expected x of shape \({D},\) or \({D}, m\)"):
        op @ torch.randn(D + 1, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"dtype torch\.float32"):
        op @ torch.randn(D)
    with pytest.raises(ValueError, match="is on meta"):
        op @ torch.randn(D, dtype=torch.float64, device="meta")
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
        op @ [1.0] * D


def test_unknown_engine_and_bad_micro_batch():
    with pytest.raises(ValueError, match="engine must be 'auto' or one of"):
        _op(engine="fast")
    with pytest.raises(ValueError, match="micro_batch_size"):
        _op(micro_batch_size=0)


def test_dense_reference_refuses_large_d():
    with pytest.raises(ValueError, match="force=True"):
        dense_matrix(_op(), max_dim=10)
    X, y = classification_data()
    assert dense_hessian(tanh_mlp(), F.cross_entropy, (X, y), max_dim=10, force=True).shape[0] > 10
