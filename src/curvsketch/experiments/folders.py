"""Data sets read from a local folder the user names: nothing is downloaded.

MNIST and Fashion-MNIST (IDX files), CIFAR-10/100 (the python pickle batches) and ImageNet
(an ImageFolder-style tree), read without torchvision, for the large-net settings of
``docs/paper.md`` §4.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from curvsketch.experiments.data import Split

FOLDER_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "imagenet")


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format of LeCun et al.), gzipped if it ends in ``.gz``."""
    path = Path(path)
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header needs {4 + 4 * ndim} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} holds {data.size} values, its header says {dims}")
    return data.reshape(dims)


def _missing(what: str, names: list[str], dirs: list[Path], hint: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what}: could not find {', '.join(names)} in any of {[str(d) for d in dirs]}; {hint}"
    )


def _load_idx_folder(folder: str, root: Path, train: bool) -> Split:
    prefix = "train" if train else "t10k"
    stems = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    dirs = [root / folder / "raw", root / folder, root]
    for d in dirs:
        found = [
            next((d / (s + e) for e in ("", ".gz") if (d / (s + e)).is_file()), None) for s in stems
        ]
        if all(found):
            images = torch.from_numpy(read_idx(found[0]).astype(np.float32) / 255.0)
            labels = torch.from_numpy(read_idx(found[1]).astype(np.int64))
            return Split(images.unsqueeze(1), labels)
    raise _missing(
        folder,
        [s + "[.gz]" for s in stems],
        dirs,
        f"download the IDX files yourself and put them in {root / folder / 'raw'}",
    )


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:  # pickle: only read CIFAR files you trust
            batch = pickle.load(handle, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise ValueError(
            f"{path} is not a CIFAR python batch ({type(err).__name__}: {err}); it is corrupt "
            "or truncated: extract the python version archive again"
        ) from err
    if not isinstance(batch, dict):
        raise ValueError(f"{path} is not a CIFAR python batch (no dict inside)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _load_cifar_folder(num_classes: int, root: Path, train: bool, coarse: bool = False) -> Split:
    if num_classes == 10:
        folder = "cifar-10-batches-py"
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        key = "labels"
    else:
        folder, names = "cifar-100-python", ["train" if train else "test"]
        key = "coarse_labels" if coarse else "fine_labels"
    dirs = [root / folder, root]
    for d in dirs:
        if all((d / n).is_file() for n in names):
            batches = [_unpickle(d / n) for n in names]
            data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
            labels = np.concatenate([np.asarray(b[key], dtype=np.int64) for b in batches])
            images = torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
            return Split(images, torch.from_numpy(labels))
    hint = f"extract the python version archive ({folder}.tar.gz) into {root}"
    raise _missing(f"CIFAR-{num_classes}", names, dirs, hint)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageFolder(Dataset[tuple[Tensor, int]]):
    """Lazy ImageFolder-style dataset ``root/<class>/<image>``, decoded with PIL on access.

    Each image is converted to RGB, its shorter side resized to ``resize``, centre-cropped
    to ``crop`` x ``crop``, scaled to [0, 1] and, if ``normalize``, standardised with the
    usual ImageNet channel mean and std. Classes are the sorted sub-folder names.
    """

    EXTENSIONS = (".jpeg", ".jpg", ".png")

    def __init__(
        self,
        root: str | Path,
        *,
        resize: int = 256,
        crop: int = 224,
        normalize: bool = True,
        transform: Callable[[Any], Tensor] | None = None,
    ) -> None:
        if importlib.util.find_spec("PIL") is None:
            raise ImportError("ImageFolder decodes images with Pillow; fix: `pip install pillow`")
        self.root = Path(root)
        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        self.samples = [
            (path, label)
            for label, name in enumerate(self.classes)
            for path in sorted((self.root / name).iterdir())
            if path.suffix.lower() in self.EXTENSIONS
        ]
        if not self.samples:
            raise FileNotFoundError(
                f"no {'/'.join(self.EXTENSIONS)} images under {self.root}/<class>/"
            )
        self.resize, self.crop, self.normalize, self.transform = resize, crop, normalize, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        with Image.open(path) as img:
            image = img.convert("RGB")
        if self.transform is not None:
            return self.transform(image), label
        scale = self.resize / min(image.size)
        w, h = (max(self.crop, round(side * scale)) for side in image.size)
        left, top = (w - self.crop) // 2, (h - self.crop) // 2
        image = image.resize((w, h), Image.BILINEAR).crop(
            (left, top, left + self.crop, top + self.crop)
        )
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        if self.normalize:
            mean, std = (torch.tensor(v).view(3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
            x = (x - mean) / std
        return x.contiguous(), label


def load_torchvision_folder(
    name: str, root: str | Path, train: bool = True, **kwargs: Any
) -> Split | ImageFolder:
    """Load a dataset already on disk in torchvision's layout, without torchvision.

    Layouts read (nothing is downloaded):

    - ``mnist`` / ``fashion-mnist``: IDX files ``train-images-idx3-ubyte[.gz]``,
      ``train-labels-idx1-ubyte[.gz]`` (``t10k-*`` for test) in ``root/MNIST/raw/``
      (``root/FashionMNIST/raw/``), ``root/MNIST/`` or ``root/``. (N, 1, 28, 28) in [0, 1].
    - ``cifar10``: pickles ``data_batch_1..5`` / ``test_batch`` in
      ``root/cifar-10-batches-py/`` or ``root/``. ``cifar100``: ``train`` / ``test`` in
      ``root/cifar-100-python/`` or ``root/`` (fine labels; ``coarse=True`` for coarse).
      (N, 3, 32, 32) in [0, 1].
    - ``imagenet``: ``root/train/<wnid>/*.JPEG`` (``root/val/<wnid>/*.JPEG`` for test,
      validation images sorted into class folders): a lazy :class:`ImageFolder`;
      ``kwargs`` go to it.

    Args:
        name: One of ``FOLDER_DATASETS`` (case, ``-`` and ``_`` ignored).
        root: Directory holding the data.
        train: Training split if True, else the test (validation) split.
        **kwargs: ``coarse`` for CIFAR-100; ImageFolder options for ImageNet.

    Returns:
        An in-memory :class:`Split`, or an :class:`ImageFolder` for ImageNet.

    Raises:
        FileNotFoundError: the files are missing; the message names them and where to put them.
        ValueError: unknown ``name``.
    """
    key, root = name.lower().replace("-", "").replace("_", ""), Path(root)
    if key in ("mnist", "fashionmnist"):
        return _load_idx_folder("MNIST" if key == "mnist" else "FashionMNIST", root, train)
    if key in ("cifar10", "cifar100"):
        return _load_cifar_folder(int(key[5:]), root, train, **kwargs)
    if key == "imagenet":
        folder = root / ("train" if train else "val")
        if not folder.is_dir():
            raise FileNotFoundError(
                f"ImageNet: {folder} does not exist; put the images in the ImageFolder layout "
                f"{root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG"
            )
        return ImageFolder(folder, **kwargs)
    raise ValueError(f"unknown dataset name {name!r}; known: {', '.join(FOLDER_DATASETS)}")
