"""The numerical mode curvature products run in: eval mode, math attention, no fused paths.

Products differentiate the network twice (reverse-over-reverse) or forward-over-reverse,
so every operation on the way must have those derivatives. PyTorch's fused kernels do
not: the flash / memory-efficient kernels of ``F.scaled_dot_product_attention`` have no
double backward and no forward-mode derivative (``derivative for
aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented``), and the
eval-mode "fast paths" of ``nn.TransformerEncoderLayer`` / ``nn.MultiheadAttention``
(``_transformer_encoder_layer_fwd``, ``_native_multi_head_attention``) have no forward-mode
derivative. :func:`product_mode` runs products with the math attention kernel (the same
function, computed by its definition ``softmax(QKᵀ/√d + mask) V``) and with the fast paths
off, and restores the caller's settings afterwards.

It also puts the model in eval mode (dropout off, batch-norm on its running statistics),
restoring each module's own mode afterwards, and says once per operator, for models with
batch-norm, that the curvature is the one of the eval-mode network.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = ["BatchNormEvalWarning", "has_batch_norm", "product_mode", "warn_batch_norm"]


class BatchNormEvalWarning(UserWarning):
    """The model has batch-norm layers: products use their running statistics (eval mode)."""


def has_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` contains a batch-norm layer (``nn.BatchNorm1d/2d/3d``, lazy, sync)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def warn_batch_norm(model: nn.Module, who: str, stacklevel: int = 2) -> None:
    """Warn that ``who``'s curvature uses batch-norm running statistics, if the model has any.

    ``stacklevel`` counts from the caller of this function (as in ``warnings.warn``).
    """
    if has_batch_norm(model):
        warnings.warn(
            f"{who}: the model has batch-norm layers; the curvature is that of the eval-mode "
            "network, with batch-norm's running statistics held fixed, not the batch "
            "statistics used in training mode (the two Hessians can differ a lot). Set the "
            "running statistics you want (e.g. by a pass over the data in train mode) before "
            "building the operator.",
            BatchNormEvalWarning,
            stacklevel=stacklevel + 1,
        )


@contextmanager
def product_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode, the math attention kernel and no fused fast paths, restored on exit.

    Args:
        model: the network; each module's ``training`` flag is restored afterwards.
    """
    modes = [(m, m.training) for m in model.modules()]
    fast_path = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
        for m, was in modes:
            m.training = was
