"""The mode products run in: the one-time batch-norm notice, settings restored."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from curvsketch.operators import BatchNormEvalWarning, GGNOperator, HessianOperator
from curvsketch.operators.modes import has_batch_norm, product_mode
from oracles import classification_data, small_cnn, tanh_mlp


def test_batch_norm_notice_once_per_operator():
    model = small_cnn()
    X, y = classification_data(n=8, c=4, shape=(1, 8, 8))
    for cls in (HessianOperator, GGNOperator):
        op = cls(model, F.cross_entropy, (X, y), engine="graph")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            op @ torch.randn(op.shape[1], dtype=torch.float64)
            op @ torch.randn(op.shape[1], dtype=torch.float64)
            op.gradient()
        notes = [w for w in seen if issubclass(w.category, BatchNormEvalWarning)]
        assert len(notes) == 1
        assert "running statistics" in str(notes[0].message)
        assert notes[0].filename == __file__  # points at the user's line, not at curvsketch


def test_no_notice_without_batch_norm():
    X, y = classification_data()
    op = HessianOperator(tanh_mlp(), F.cross_entropy, (X, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BatchNormEvalWarning)
        op @ torch.randn(op.shape[1], dtype=torch.float64)
    assert not has_batch_norm(tanh_mlp())


def test_product_mode_restores_on_error():
    model = small_cnn()
    model.train()
    with pytest.raises(KeyError), product_mode(model):
        assert not model.training and not torch.backends.mha.get_fastpath_enabled()
        assert not torch.backends.cuda.flash_sdp_enabled()
        raise KeyError("boom")
    assert model.training and all(m.training for m in model.modules())
    assert torch.backends.mha.get_fastpath_enabled()
    assert torch.backends.cuda.flash_sdp_enabled()
