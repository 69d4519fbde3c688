"""Experiments: the study of ``docs/paper.md`` §4 (configuration, data, models, training).

What this package exports, by task (``__all__`` is grouped the same way):

* **The study.** :func:`load_config` reads a TOML file into a frozen :class:`StudyConfig`
  (a bad key or value is one :class:`ConfigError`); :func:`run_study` runs or resumes it
  into a folder (:mod:`~curvsketch.experiments.pipeline`).
* **Data** (:mod:`~curvsketch.experiments.data`, :mod:`~curvsketch.experiments.folders`;
  nothing is downloaded): :func:`mnist16`, :func:`load_mnist_5k`, :func:`sklearn_digits`,
  :func:`synthetic_classification`, :func:`load_torchvision_folder` (the folder sets of
  :data:`FOLDER_DATASETS`, :class:`ImageFolder`), the splits :class:`Split` and
  :class:`TrainTest`, and :func:`balanced_subset`, :func:`as_batches` for Hessian data.
* **Models** (:mod:`~curvsketch.experiments.models`): :func:`build_model` by name of
  :data:`MODELS`; the builders :func:`mlp`, :func:`scaled_mlp`, :func:`paper_mlp`,
  :func:`deepobs_3c3d`, :func:`all_cnn_c`, :func:`resnet18` (:class:`ResNet18`);
  :data:`ACTIVATIONS`, :data:`PAPER_PARAMETER_COUNTS`, :func:`count_parameters`.
* **Training** (:mod:`~curvsketch.experiments.training`): :func:`train` (seeded,
  checkpointed, resumable plain SGD) returning a :class:`TrainLog`; :func:`evaluate`.

Everything else (the analysed step, the stores' workers, figures, schema, sweeps, the
preflight checks, the layers inside the networks, the batch order) stays importable from
its submodule.
"""

from curvsketch.experiments.config import ConfigError, StudyConfig, load_config
from curvsketch.experiments.data import (
    Split,
    TrainTest,
    as_batches,
    balanced_subset,
    load_mnist_5k,
    mnist16,
    sklearn_digits,
    synthetic_classification,
)
from curvsketch.experiments.folders import (
    FOLDER_DATASETS,
    ImageFolder,
    load_torchvision_folder,
)
from curvsketch.experiments.models import (
    ACTIVATIONS,
    MODELS,
    PAPER_PARAMETER_COUNTS,
    ResNet18,
    all_cnn_c,
    build_model,
    count_parameters,
    deepobs_3c3d,
    mlp,
    paper_mlp,
    resnet18,
    scaled_mlp,
)
from curvsketch.experiments.pipeline import run_study
from curvsketch.experiments.training import TrainLog, evaluate, train

__all__ = [  # noqa: RUF022 - grouped by task as in the module docstring
    # the study
    "ConfigError",
    "StudyConfig",
    "load_config",
    "run_study",
    # data
    "FOLDER_DATASETS",
    "ImageFolder",
    "Split",
    "TrainTest",
    "as_batches",
    "balanced_subset",
    "load_mnist_5k",
    "load_torchvision_folder",
    "mnist16",
    "sklearn_digits",
    "synthetic_classification",
    # models
    "ACTIVATIONS",
    "MODELS",
    "PAPER_PARAMETER_COUNTS",
    "ResNet18",
    "all_cnn_c",
    "build_model",
    "count_parameters",
    "deepobs_3c3d",
    "mlp",
    "paper_mlp",
    "resnet18",
    "scaled_mlp",
    # training
    "TrainLog",
    "evaluate",
    "train",
]
