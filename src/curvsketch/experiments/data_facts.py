"""What a study's data will look like, known from its ``[data]`` section without loading it.

The input shape, the number of classes, the training-set size and the samples per class
of every split, for the bundled sets (as :mod:`curvsketch.experiments.data` returns them),
for ``synthetic`` (as the study draws it) and for the local folder sets of
:mod:`curvsketch.experiments.folders` (whose sizes are known only once loaded). The
preflight checks (:mod:`curvsketch.experiments.preflight`) compare the model and the
sizes of a configuration against these facts before anything trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from curvsketch.experiments.config import ConfigError, DataConfig
from curvsketch.experiments.config_rules import normalise_data_name, toml
from curvsketch.experiments.data import DIGITS_MIN_PER_CLASS, MNIST_5K_PER_CLASS

__all__ = ["DataFacts", "data_facts"]


@dataclass(frozen=True)
class DataFacts:
    """What a study's data will look like, known from ``[data]`` without loading it.

    Attributes:
        input_shape: shape of one input (``None``: known only once loaded).
        num_classes: number of classes (``None``: known only once loaded).
        train_size: training samples (``None``: unknown).
        per_class: split → samples of the smallest class (``None``: unknown), each with
            the keys that set it (for messages).
    """

    input_shape: tuple[int, ...] | None
    num_classes: int | None
    train_size: int | None
    per_class: dict[str, tuple[int | None, str]]


_FOLDER_LAYOUT = {  # where curvsketch.experiments.folders looks (for messages)
    "mnist": "the IDX files in MNIST/raw/",
    "fashion-mnist": "the IDX files in FashionMNIST/raw/",
    "cifar10": "the extracted python archive cifar-10-batches-py/",
    "cifar100": "the extracted python archive cifar-100-python/",
    "imagenet": "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG",
}
_FOLDER_FACTS = {  # what curvsketch.experiments.folders returns for each folder data set
    "mnist": ((1, 28, 28), 10),
    "fashion-mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
    "imagenet": ((3, 224, 224), None),
}


def data_facts(data: DataConfig) -> DataFacts:
    """The input shape, classes and per-class counts that ``data`` will give.

    The bundled sets are as :func:`~curvsketch.experiments.data.mnist16` (flattened 16×16,
    500 digits per class) and :func:`~curvsketch.experiments.data.sklearn_digits`
    (flattened 8×8) return them; ``synthetic`` as the study draws it (balanced labels,
    a test set of ``max(num_samples // 4, num_classes)``).

    Raises:
        ConfigError: the requested split does not fit in the bundled data.
    """
    name = normalise_data_name(data.name)
    n_tr, n_te = data.n_train_per_class, data.n_test_per_class
    if name == "mnist16":
        if n_tr + n_te > MNIST_5K_PER_CLASS:
            raise ConfigError(
                f"data.n_train_per_class + data.n_test_per_class = {n_tr} + {n_te} exceeds "
                f"the {MNIST_5K_PER_CLASS} digits per class of data.name = 'mnist16'; lower "
                f"them to a sum of at most {MNIST_5K_PER_CLASS}"
            )
        per_class = {
            "train": (n_tr, f"data.n_train_per_class = {n_tr}"),
            "test": (n_te, f"data.n_test_per_class = {n_te}"),
        }
        return DataFacts((256,), 10, 10 * n_tr, per_class)
    if name == "digits":
        if n_te >= DIGITS_MIN_PER_CLASS:
            raise ConfigError(
                f"data.n_test_per_class = {n_te} leaves no training images: data.name = "
                f"'digits' has {DIGITS_MIN_PER_CLASS} images in its smallest class; use at "
                f"most {DIGITS_MIN_PER_CLASS - 1}"
            )
        left = DIGITS_MIN_PER_CLASS - n_te
        per_class = {
            "train": (left, f"{DIGITS_MIN_PER_CLASS} − data.n_test_per_class = {n_te}"),
            "test": (n_te, f"data.n_test_per_class = {n_te}"),
        }
        return DataFacts((64,), 10, 1797 - 10 * n_te, per_class)
    if name == "synthetic":
        n, c = data.num_samples, data.num_classes
        n_test = max(n // 4, c)
        per_class = {
            "train": (n // c, f"data.num_samples // data.num_classes = {n} // {c}"),
            "test": (n_test // c, f"a test set of max(num_samples // 4, num_classes) = {n_test}"),
        }
        return DataFacts(tuple(data.input_shape), c, n, per_class)
    layout = _FOLDER_LAYOUT.get(name or "", "its files")
    if data.root is None:
        raise ConfigError(
            f"data.name = {toml(data.name)} reads a local folder: set data.root (or pass "
            f"--data-root) to the folder that holds {layout}; nothing is downloaded"
        )
    root = Path(data.root).expanduser()
    if not root.is_dir():
        raise ConfigError(
            f"data.root = {toml(str(data.root))} is not a folder (data.name = "
            f"{toml(data.name)}); point data.root or --data-root to the folder that holds "
            f"{layout}"
        )
    shape, classes = _FOLDER_FACTS.get(name or "", (None, None))
    unknown = (None, "")
    return DataFacts(shape, classes, None, {"train": unknown, "test": unknown})
