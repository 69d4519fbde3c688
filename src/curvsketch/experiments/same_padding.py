"""Convolution and max pooling with TensorFlow's 'SAME' padding, for the DeepOBS networks.

DeepOBS (Schneider, Balles, Hennig, ICLR 2019) defines its nets in TensorFlow, where
``padding="SAME"`` pads so that the output has ``ceil(size / stride)`` entries and puts
an odd extra row or column *after* the input. PyTorch's ``padding="same"`` exists for
stride 1 only and pads symmetrically, so the stride-2 layers of
:func:`~curvsketch.experiments.models.all_cnn_c` and the pools of
:func:`~curvsketch.experiments.models.deepobs_3c3d` use these modules, which pad each
input from its own size.
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn.functional import max_pool2d, pad

__all__ = ["SameConv2d", "SameMaxPool2d", "same_padding"]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after): output ceil(size/stride), extra after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow 'SAME' zero padding, computed from each input's size.

    Differs from ``padding="same"`` for stride 2 on even sizes: TF pads (0, 1), not (1, 1).
    """

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = same_padding(x.shape[-2], kh, sh)
        left, right = same_padding(x.shape[-1], kw, sw)
        return super().forward(pad(x, (left, right, top, bottom)))


class SameMaxPool2d(nn.Module):
    """Max pooling with TensorFlow 'SAME' padding (padded cells never win: -inf)."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size, self.stride)
        left, right = same_padding(x.shape[-1], self.kernel_size, self.stride)
        x = pad(x, (left, right, top, bottom), value=float("-inf"))
        return max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding=SAME"
