"""The sections of a study configuration: typed, frozen, with the paper's defaults.

Plain data, importing nothing of the package: :mod:`.config` composes them into a
:class:`~curvsketch.experiments.config.StudyConfig` and reads TOML, :mod:`.config_rules`
checks them. Both import this module, neither imports the other's caller (no circle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AnalysisConfig",
    "ConfigError",
    "DataConfig",
    "HessianConfig",
    "ModelConfig",
    "SketchConfig",
    "SweepConfig",
    "TrainConfig",
]


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the fix."""


@dataclass(frozen=True)
class DataConfig:
    """Which samples: a bundled set, a local folder, or synthetic data.

    Attributes:
        name: ``mnist16`` (bundled, default), ``digits`` (bundled scikit-learn 8×8),
            ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``, ``imagenet`` (read from
            ``root``), or ``synthetic``.
        root: folder holding a torchvision-style data set (for the folder names).
        n_train_per_class: training samples per class (bundled sets).
        n_test_per_class: test samples per class (bundled sets).
        hessian_per_class: class-balanced Hessian samples per class (50 → 500 for 10 classes).
        seed: seed of the splits and of the Hessian subsets.
        input_shape: for ``synthetic``: the shape of one input.
        num_classes: for ``synthetic``.
        num_samples: for ``synthetic``: training samples (test: a quarter of it).
    """

    name: str = "mnist16"
    root: str | None = None
    n_train_per_class: int = 400
    n_test_per_class: int = 100
    hessian_per_class: int = 50
    seed: int = 0
    input_shape: tuple[int, ...] = (256,)
    num_classes: int = 10
    num_samples: int = 2000


@dataclass(frozen=True)
class ModelConfig:
    """Which network: a name from ``curvsketch.experiments.models.MODELS`` and its arguments."""

    name: str = "paper_mlp"
    kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Plain SGD with a constant learning rate (the paper's MNIST setting by default)."""

    steps: int = 1000
    lr: float = 0.3
    batch_size: int = 500
    seed: int = 0


@dataclass(frozen=True)
class HessianConfig:
    """Which curvature, at which steps, on which samples, and how it is computed.

    Attributes:
        steps: training steps at which to analyse the curvature.
        splits: ``train`` and/or ``test`` (the Hessian sample sets H_tr, H_te).
        kind: ``hessian`` (the paper) or ``ggn``.
        exact: ``auto`` (exact eigendecomposition when D ≤ ``max_exact_dim``), ``true``
            or ``false``.
        max_exact_dim: the size limit of ``auto``.
        dtype: ``float64`` or ``float32``, for the products and the linear algebra.
        exact_dtype: dtype of the exact reference (dense Hessian and its eigendecomposition;
            ``float32`` halves its time at D = 7,030, eigenvalue errors stay ~1e-6 ‖H‖).
        engine: block-product engine (``auto`` measures them).
        micro_batch_size: samples per micro-batch (empty: all at once).
    """

    steps: tuple[int, ...] = (0, 100, 250, 500, 1000)
    splits: tuple[str, ...] = ("train", "test")
    kind: str = "hessian"
    exact: str = "auto"
    max_exact_dim: int = 12_000
    dtype: str = "float64"
    exact_dtype: str = "float32"
    engine: str = "auto"
    micro_batch_size: int | None = None


@dataclass(frozen=True)
class SketchConfig:
    """Sketched eigendecomposition settings (``curvsketch.seigh``) and its error estimate.

    Attributes:
        outer: eigenpairs to sketch (capped at D).
        inner: inner sketch size (``singlepass``/``tropp``) or Krylov basis size
            (``krylov``); default ``2·outer``; not used by ``hmt``/``nystrom``.
        recovery: ``singlepass`` (the paper's), ``tropp``, ``hmt``, ``nystrom`` or
            ``krylov`` (the most accurate per product at large k).
        noise: test operators, ``ssrft``, ``gaussian`` or ``rademacher``.
        seed: seed of the test operators (and of the error estimate).
        block_size: test vectors per operator call (for ``krylov``: the Krylov block).
        power_iters: subspace iterations of ``hmt``.
        which: ``LM`` (largest ``|λ|``, the paper's), ``LA`` (largest algebraic) or ``SA``
            (smallest algebraic: the most negative curvature); ``LA``/``SA`` need
            ``recovery = "krylov"`` or ``"hmt"``.
        error_tests: test vectors of the a-posteriori error estimate.
    """

    outer: int = 355
    inner: int | None = 710
    recovery: str = "singlepass"
    noise: str = "ssrft"
    seed: int = 0
    block_size: int | None = None
    power_iters: int = 0
    which: str = "LM"
    error_tests: int = 30


@dataclass(frozen=True)
class AnalysisConfig:
    """What to measure from eigenpairs and parameters.

    Attributes:
        ks: mask sizes k reported in ``results.json`` and the summary.
        main_k: the k of the headline numbers and the overlap-vs-step figure.
        rhos: ρ = k/D at which the seven Grassmann metrics are computed.
        random_draws: random masks per curve (mean ± std).
        scores: per-parameter scores whose masks are compared: ``magnitude``,
            ``gradient``, ``ggn_diag``, ``diag_h2``.
        ggn_diag_probes: Hutchinson probes (Rademacher) for the GGN diagonal.
        stability_ks: k values of the stabilisation heatmaps.
        trace_products: operator products for the trace estimate of each analysed step
            (:func:`curvsketch.trace`, with a standard error); ``0`` skips it.
        trace_method: ``xtrace`` (default), ``hutch++`` or ``hutchinson``.
        density_probes: random probes of the spectral density (stochastic Lanczos
            quadrature, :func:`curvsketch.spectral_density`); ``0`` skips it.
        density_steps: Lanczos steps per probe of the density (its quadrature nodes);
            ``0`` skips it.

    Trace and density are deflated by the sketched eigenpairs when the recovery keeps
    Rayleigh–Ritz values (``hmt``, ``krylov``); a ``singlepass`` result is not used.
    """

    ks: tuple[int, ...] = (10, 50, 100, 200, 350)
    main_k: int = 350
    rhos: tuple[float, ...] = (0.005, 0.01, 0.05)
    random_draws: int = 10
    scores: tuple[str, ...] = ("magnitude", "gradient", "ggn_diag", "diag_h2")
    ggn_diag_probes: int = 100
    stability_ks: tuple[int, ...] = (35, 70, 350)
    trace_products: int = 60
    trace_method: str = "xtrace"
    density_probes: int = 8
    density_steps: int = 40


@dataclass(frozen=True)
class SweepConfig:
    """Size sweep: the same study for several MLP widths (the size effect)."""

    widths: tuple[int, ...] = ()
    rho: float = 0.05
