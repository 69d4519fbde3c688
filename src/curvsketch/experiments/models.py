"""The networks of the study (``docs/paper.md`` §4), in plain ``torch.nn``.

Every builder takes an optional ``seed``: with it, the initialisation is drawn from a
private CPU generator state (``torch.random.fork_rng``) and leaves the global RNG alone.
Layer names follow the source implementations (DeepOBS, torchvision), so their state
dicts line up. The TensorFlow-'SAME' layers of the DeepOBS nets are in
:mod:`curvsketch.experiments.same_padding` (importable from here too).
"""

from __future__ import annotations

import inspect
import itertools
import numbers
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from curvsketch.experiments.same_padding import SameConv2d, SameMaxPool2d

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}

#: Parameter counts D of the paper's four settings (``docs/paper.md`` §4).
PAPER_PARAMETER_COUNTS = {
    "paper_mlp": 7_030,
    "deepobs_3c3d": 895_210,
    "all_cnn_c": 1_387_108,
    "resnet18": 11_689_512,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _count(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer ``>= minimum`` (not a bool or float)."""
    if not _is_int(value):
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})"
        )
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _activation(activation: Any) -> Callable[[], nn.Module]:
    """Resolve an activation name of ``ACTIVATIONS`` or check a module factory."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
        return ACTIVATIONS[activation]
    if callable(activation) and not isinstance(activation, nn.Module):
        return activation
    raise ValueError(
        f"activation must be a name ({', '.join(ACTIVATIONS)}) or a zero-argument module "
        f"factory such as nn.ELU, got {activation!r}"
    )


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is not None and not _is_int(seed):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters D (buffers such as batch-norm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ---------------------------------------------------------------------------------- MLPs


def mlp(
    sizes: Sequence[int],
    activation: str | Callable[[], nn.Module] = "tanh",
    *,
    seed: int | None = None,
) -> nn.Sequential:
    """Fully connected net ``sizes[0] -> ... -> sizes[-1]``, activation between layers.

    Inputs are flattened first, so (N, 1, 16, 16) and (N, 256) both work. Weights use
    PyTorch's default ``nn.Linear`` initialisation. Parameter count:
    ``sum(a * b + b for a, b in zip(sizes, sizes[1:]))``.

    Args:
        sizes: Layer widths, input first, number of outputs last (at least two entries).
        activation: A name in ``ACTIVATIONS`` or a zero-argument module factory.
        seed: Initialisation seed (global RNG if None).

    Returns:
        ``nn.Sequential(Flatten, Linear, act, ..., Linear)`` producing logits.
    """
    if (
        isinstance(sizes, str | bytes)
        or not isinstance(sizes, Sequence)
        or len(sizes) < 2
        or any(not _is_int(s) or s < 1 for s in sizes)
    ):
        raise ValueError(
            f"sizes must hold at least two positive integer widths (a list, input first, "
            f"outputs last, e.g. [256, 20, 10]), got {sizes!r}"
        )
    factory = _activation(activation)
    layers: list[nn.Module] = [nn.Flatten()]
    with _seeded(seed):
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            if i:
                layers.append(factory())
            layers.append(nn.Linear(int(fan_in), int(fan_out)))
    return nn.Sequential(*layers)


def scaled_mlp(
    width: int,
    depth: int = 5,
    input_dim: int = 256,
    num_classes: int = 10,
    *,
    activation: str | Callable[[], nn.Module] = "tanh",
    seed: int | None = None,
) -> nn.Sequential:
    """The paper's MLP with the hidden width varied (the size effect of ``docs/paper.md`` §4).

    ``depth`` hidden layers of ``width`` units; D = input_dim·w + w + (depth-1)(w² + w)
    + w·num_classes + num_classes. ``scaled_mlp(20)`` is :func:`paper_mlp` (7,030).
    """
    for name, value in (("width", width), ("input_dim", input_dim), ("num_classes", num_classes)):
        _count(name, value)
    _count("depth (hidden layers)", depth)
    return mlp([input_dim, *[width] * depth, num_classes], activation, seed=seed)


def paper_mlp(*, seed: int | None = None) -> nn.Sequential:
    """MLP 256-20-20-20-20-20-10 with tanh on 16x16 MNIST: exactly **7,030** parameters.

    Source: Fernandez et al. (TMLR 2025), the 16x16 MNIST setting (``docs/paper.md`` §4).
    D = 256·20+20 + 4·(20·20+20) + 20·10+10 = 5,140 + 1,680 + 210 = 7,030.
    """
    return scaled_mlp(20, seed=seed)


class _SpatialMean(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(-2, -1))


# --------------------------------------------------------------------------------- CNNs


def deepobs_3c3d(num_classes: int = 10, *, seed: int | None = None) -> nn.Sequential:
    """DeepOBS ``cifar10_3c3d`` for 3x32x32 inputs: exactly **895,210** parameters.

    Source: Schneider, Balles, Hennig, "DeepOBS" (ICLR 2019), test problem cifar10_3c3d.
    conv 64@5x5 valid, max-pool 3/2 SAME, conv 96@3x3 valid, max-pool, conv 128@3x3 SAME,
    max-pool (32 -> 28 -> 14 -> 12 -> 6 -> 6 -> 3, so 3·3·128 = 1,152 features), then
    dense 512, 256, ``num_classes``; ReLU. Init as DeepOBS: conv Xavier-normal, dense
    Xavier-uniform, biases 0. D = 4,864 + 55,392 + 110,720 + 590,336 + 131,328 + 2,570.
    """
    _count("num_classes", num_classes)
    with _seeded(seed):
        net = nn.Sequential()
        net.add_module("conv1", nn.Conv2d(3, 64, 5))
        net.add_module("relu1", nn.ReLU())
        net.add_module("maxpool1", SameMaxPool2d(3, 2))
        net.add_module("conv2", nn.Conv2d(64, 96, 3))
        net.add_module("relu2", nn.ReLU())
        net.add_module("maxpool2", SameMaxPool2d(3, 2))
        net.add_module("conv3", nn.Conv2d(96, 128, 3, padding=1))
        net.add_module("relu3", nn.ReLU())
        net.add_module("maxpool3", SameMaxPool2d(3, 2))
        net.add_module("flatten", nn.Flatten())
        net.add_module("dense1", nn.Linear(3 * 3 * 128, 512))
        net.add_module("relu4", nn.ReLU())
        net.add_module("dense2", nn.Linear(512, 256))
        net.add_module("relu5", nn.ReLU())
        net.add_module("dense3", nn.Linear(256, num_classes))
        for module in net.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                init = (
                    nn.init.xavier_normal_
                    if isinstance(module, nn.Conv2d)
                    else nn.init.xavier_uniform_
                )
                init(module.weight)
                nn.init.zeros_(module.bias)
    return net


def all_cnn_c(num_classes: int = 100, *, seed: int | None = None) -> nn.Sequential:
    """All-CNN-C as in DeepOBS ``cifar100_allcnnc``: exactly **1,387,108** parameters.

    Source: Springenberg, Dosovitskiy, Brox, Riedmiller, "Striving for Simplicity: The All
    Convolutional Net" (ICLR workshop 2015); layout and init of DeepOBS (Schneider et al.
    2019): dropout 0.2, 2x conv 96@3x3, conv 96@3x3/2, dropout 0.5, 2x conv 192@3x3,
    conv 192@3x3/2, dropout 0.5, conv 192@3x3 valid, conv 192@1x1, conv ``num_classes``@1x1,
    ReLU after every conv, spatial mean. Convs use TF 'SAME' padding except conv7. Init:
    Xavier-normal weights, biases 0.1. Dropout is inactive in ``eval()`` (Hessian) mode.
    """
    _count("num_classes", num_classes)
    spec = [  # (out channels, kernel, stride, SAME padding)
        (96, 3, 1, True), (96, 3, 1, True), (96, 3, 2, True),
        (192, 3, 1, True), (192, 3, 1, True), (192, 3, 2, True),
        (192, 3, 1, False), (192, 1, 1, True), (num_classes, 1, 1, True),
    ]  # fmt: skip
    dropout_before = {1: ("dropout1", 0.2), 4: ("dropout2", 0.5), 7: ("dropout3", 0.5)}
    with _seeded(seed):
        net, in_channels = nn.Sequential(), 3
        for i, (out_channels, kernel, stride, same) in enumerate(spec, start=1):
            if i in dropout_before:
                name, p = dropout_before[i]
                net.add_module(name, nn.Dropout(p))
            if same and stride > 1:  # asymmetric TF padding
                conv: nn.Conv2d = SameConv2d(in_channels, out_channels, kernel, stride)
            else:  # symmetric: a standard module
                pad = kernel // 2 if same else 0
                conv = nn.Conv2d(in_channels, out_channels, kernel, stride, pad)
            net.add_module(f"conv{i}", conv)
            net.add_module(f"relu{i}", nn.ReLU())
            in_channels = out_channels
        net.add_module("mean", _SpatialMean())
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_normal_(module.weight)
                nn.init.constant_(module.bias, 0.1)
    return net


# ------------------------------------------------------------------------------ ResNet


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN pairs plus the (projected) identity."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's module names (see :func:`resnet18`)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, in_channels = (64, 128, 256, 512), 64
        for i, width in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            layer = nn.Sequential(BasicBlock(in_channels, width, stride), BasicBlock(width, width))
            self.add_module(f"layer{i}", layer)
            in_channels = width
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000, *, seed: int | None = None) -> ResNet18:
    """ResNet-18 with batch norm, torchvision layout: exactly **11,689,512** parameters.

    Source: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition" (CVPR
    2016); module names and initialisation (Kaiming-normal fan-out convs, BN 1/0, default
    Linear) as ``torchvision.models.resnet18``, so its state dicts load. ReLUs are not
    in-place (friendlier to ``torch.func`` transforms; same numbers). Any input of at
    least 32x32 works (adaptive average pooling).
    """
    _count("num_classes", num_classes)
    with _seeded(seed):
        return ResNet18(num_classes)


# ---------------------------------------------------------------------------- registry

MODELS: dict[str, Callable[..., nn.Module]] = {
    "paper_mlp": paper_mlp,
    "scaled_mlp": scaled_mlp,
    "mlp": mlp,
    "deepobs_3c3d": deepobs_3c3d,
    "all_cnn_c": all_cnn_c,
    "resnet18": resnet18,
}


def model_arguments(name: str, *, required: bool = False) -> list[str]:
    """Keyword arguments that the builder ``name`` of ``MODELS`` accepts (``seed`` included).

    Args:
        name: a name of ``MODELS``.
        required: only those without a default.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    params = inspect.signature(_builder(name)).parameters.values()
    return [p.name for p in params if not required or p.default is inspect.Parameter.empty]


def _builder(name: Any) -> Callable[..., nn.Module]:
    key = name.lower().replace("-", "_") if isinstance(name, str) else None
    if key not in MODELS:
        raise ValueError(f"unknown model name {name!r}; known names: {', '.join(MODELS)}")
    return MODELS[key]


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build a model by registry name (``-`` and ``_`` interchangeable, case ignored).

    Args:
        name: One of ``MODELS``: paper_mlp, scaled_mlp, mlp, deepobs_3c3d, all_cnn_c, resnet18.
        **kwargs: Passed to the builder (e.g. ``width=`` for scaled_mlp, ``seed=``).

    Raises:
        ValueError: unknown name (the message lists the known ones), an argument the
            builder does not take, a missing one, or a bad value (each named, with the
            builder's arguments).
    """
    builder = _builder(name)
    signature = inspect.signature(builder)
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        raise ValueError(
            f"model {name!r}: {err}; its arguments: {', '.join(signature.parameters)}"
        ) from None
    try:
        return builder(**kwargs)
    except ValueError as err:
        raise ValueError(f"model {name!r}: {err}") from None
