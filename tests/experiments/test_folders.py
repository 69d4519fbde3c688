"""Tests of curvsketch.experiments.folders: local-folder loaders on small fake files."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from curvsketch.experiments.folders import ImageFolder, load_torchvision_folder, read_idx

# ------------------------------------------------------------------------ local folders


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def _fake_mnist(folder: Path, prefix: str, n: int, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize(
    ("name", "sub", "gz"), [("mnist", "MNIST/raw", True), ("FashionMNIST", "", False)]
)
def test_idx_folders(tmp_path, name, sub, gz):
    images, labels = _fake_mnist(tmp_path / sub, "train", 6, gz)
    test_images, _ = _fake_mnist(tmp_path / sub, "t10k", 4, gz)
    train = load_torchvision_folder(name, tmp_path)
    assert train.inputs.shape == (6, 1, 28, 28) and train.targets.dtype == torch.int64
    torch.testing.assert_close(train.inputs[:, 0], torch.from_numpy(images / 255.0).float())
    assert train.targets.tolist() == labels.tolist()
    assert load_torchvision_folder(name, tmp_path, train=False).inputs.shape == (4, 1, 28, 28)
    assert test_images.shape == (4, 28, 28)


def test_idx_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*MNIST/raw"):
        load_torchvision_folder("mnist", tmp_path)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x05")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"\x00\x01")
    with pytest.raises(ValueError, match="holds 2 values"):
        read_idx(tmp_path / "short")


def _write_pickle(path: Path, batch: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch))


def test_cifar10_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    rng = np.random.default_rng(0)
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [1, 2, 9]}
        _write_pickle(folder / name, batch)  # bytes keys, like the original Python 2 pickles
        batches.append(batch)
    train = load_torchvision_folder("cifar10", tmp_path)
    assert train.inputs.shape == (15, 3, 32, 32) and train.targets.tolist() == [1, 2, 9] * 5
    first = batches[0][b"data"][0]
    assert float(train.inputs[0, 1, 0, 0]) == pytest.approx(first[1024] / 255.0)  # green (0, 0)
    assert float(train.inputs[0, 0, 0, 5]) == pytest.approx(first[5] / 255.0)
    test = load_torchvision_folder("cifar-10", folder, train=False)  # root = the folder itself
    assert test.inputs.shape == (3, 3, 32, 32)


def test_cifar100_folder_and_missing(tmp_path):
    data = np.zeros((2, 3072), dtype=np.uint8)
    for split in ("train", "test"):
        _write_pickle(
            tmp_path / "cifar-100-python" / split,
            {"data": data, "fine_labels": [42, 99], "coarse_labels": [3, 19]},
        )
    assert load_torchvision_folder("cifar100", tmp_path).targets.tolist() == [42, 99]
    coarse = load_torchvision_folder("cifar_100", tmp_path, train=False, coarse=True)
    assert coarse.targets.tolist() == [3, 19]
    with pytest.raises(FileNotFoundError, match=r"data_batch_1.*cifar-10-batches-py"):
        load_torchvision_folder("cifar10", tmp_path)


def test_imagenet_folder(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for wnid, count in (("n01440764", 2), ("n01443537", 1)):
        (tmp_path / "train" / wnid).mkdir(parents=True)
        for k in range(count):
            pixels = rng.integers(0, 256, (20 + 7 * k, 30, 3), dtype=np.uint8)
            image_module.fromarray(pixels).save(tmp_path / "train" / wnid / f"{wnid}_{k}.JPEG")
    (tmp_path / "train" / "n01443537" / "notes.txt").write_text("not an image")
    dataset = load_torchvision_folder("imagenet", tmp_path, resize=16, crop=12, normalize=False)
    assert isinstance(dataset, ImageFolder) and len(dataset) == 3
    assert dataset.classes == ["n01440764", "n01443537"]
    x, label = dataset[2]
    assert x.shape == (3, 12, 12) and label == 1 and x.min() >= 0.0 and x.max() <= 1.0
    assert load_torchvision_folder("imagenet", tmp_path, resize=16, crop=12)[0][0].min() < 0
    with pytest.raises(FileNotFoundError, match=r"val.*<wnid>/\*\.JPEG"):
        load_torchvision_folder("imagenet", tmp_path, train=False)


def test_unknown_folder_dataset(tmp_path):
    with pytest.raises(ValueError, match="known: mnist, fashion-mnist"):
        load_torchvision_folder("svhn", tmp_path)


def test_truncated_idx_header_and_garbage_cifar_are_value_errors(tmp_path):
    """A truncated header gave struct.error and a garbage pickle UnpicklingError (tracebacks)."""
    (tmp_path / "short-idx3-ubyte").write_bytes(bytes([0, 0, 0x08, 3, 0, 0]))
    with pytest.raises(ValueError, match=r"short-idx3-ubyte is truncated"):
        read_idx(tmp_path / "short-idx3-ubyte")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match=r"test_batch is not a CIFAR python batch.*extract"):
        load_torchvision_folder("cifar10", tmp_path, train=False)
