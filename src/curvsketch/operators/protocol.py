"""The linear-operator protocol that every layer above ``operators`` speaks.

An *operator* is anything with ``.shape == (D, D)`` (or ``(M, N)`` for rectangular
operators), a torch ``.dtype``, a torch ``.device`` and ``op @ x`` for ``x`` a tensor of
shape ``(N,)`` or ``(N, m)``. A plain ``torch.Tensor`` already qualifies; so do curvlinops
3.x operators. :func:`as_operator` wraps the rest (scipy ``LinearOperator``s, NumPy
arrays), and :class:`LinearOperator` is the small base class our own operators derive
from (shape/dtype/device checks, ``.to_scipy()``, ``.T``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

__all__ = [
    "DenseOperator",
    "LinearOperator",
    "Operator",
    "ScipyOperator",
    "as_operator",
    "check_block",
]


@runtime_checkable
class Operator(Protocol):
    """Structural type of a linear operator: ``shape``, ``dtype``, ``device`` and ``@``."""

    @property
    def shape(self) -> tuple[int, ...]: ...  # pragma: no cover - protocol

    @property
    def dtype(self) -> torch.dtype: ...  # pragma: no cover - protocol

    @property
    def device(self) -> torch.device: ...  # pragma: no cover - protocol

    def __matmul__(self, other: torch.Tensor) -> torch.Tensor: ...  # pragma: no cover


def check_block(
    x: torch.Tensor, n: int, dtype: torch.dtype, device: torch.device, who: str = "operator"
) -> tuple[torch.Tensor, bool]:
    """Validate a right-hand side for ``op @ x`` and return it as a 2-D block.

    Args:
        x: the vector ``(n,)`` or block ``(n, m)``.
        n: expected number of rows (the operator's number of columns).
        dtype: the operator's dtype; ``x`` must match it.
        device: the operator's device; ``x`` must be on it.
        who: name used in error messages.

    Returns:
        ``(block, was_vector)``: ``x`` viewed as ``(n, m)`` and whether it was 1-D.

    Raises:
        TypeError: ``x`` is not a tensor or has the wrong dtype.
        ValueError: wrong shape or device.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} @ x: x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim not in (1, 2) or x.shape[0] != n:
        raise ValueError(
            f"{who} @ x: expected x of shape ({n},) or ({n}, m), got {tuple(x.shape)}; "
            "vectors are stacked as columns"
        )
    if x.dtype != dtype:
        raise TypeError(
            f"{who} @ x: x has dtype {x.dtype}, the operator has {dtype}; use x.to({dtype})"
        )
    if torch.device(x.device).type != torch.device(device).type:
        raise ValueError(
            f"{who} @ x: x is on {x.device}, the operator on {device}; use x.to('{device}')"
        )
    vector = x.ndim == 1
    return (x.unsqueeze(1) if vector else x), vector


class LinearOperator:
    """Base class for curvsketch operators.

    Subclasses set ``shape``, ``dtype`` and ``device`` and implement :meth:`_matmat` on a
    validated ``(N, m)`` block. The base class validates input, handles vectors, and offers
    :meth:`to_scipy` so that the operator can be handed to ``scipy.sparse.linalg.eigsh``.

    Attributes:
        shape: ``(M, N)``.
        dtype: torch dtype of products.
        device: torch device where products are computed.
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _rmatmat(self, x: torch.Tensor) -> torch.Tensor:
        """Adjoint block product; symmetric operators need not override it."""
        if self.shape[0] != self.shape[1]:
            raise NotImplementedError(f"{type(self).__name__} has no adjoint product")
        return self._matmat(x)

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        block, vector = check_block(x, self.shape[1], self.dtype, self.device, type(self).__name__)
        out = self._matmat(block)
        return out[:, 0] if vector else out

    def rmatmul(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``opᵀ @ x`` for ``x`` of shape ``(M,)`` or ``(M, m)``."""
        block, vector = check_block(x, self.shape[0], self.dtype, self.device, type(self).__name__)
        out = self._rmatmat(block)
        return out[:, 0] if vector else out

    @property
    def T(self) -> LinearOperator:
        """The adjoint operator (itself for symmetric operators)."""
        return _Adjoint(self)

    def to_scipy(self) -> Any:
        """Wrap as a ``scipy.sparse.linalg.LinearOperator`` working on NumPy arrays.

        Products convert to and from the operator's torch dtype and device, so the result
        can go straight into ``scipy.sparse.linalg.eigsh``.

        Returns:
            A scipy ``LinearOperator`` of the same shape.
        """
        from scipy.sparse.linalg import LinearOperator as ScipyLO

        np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype

        def mm(x: np.ndarray) -> np.ndarray:
            t = torch.as_tensor(np.ascontiguousarray(x), dtype=self.dtype, device=self.device)
            return (self @ t).detach().cpu().numpy()

        def rmm(x: np.ndarray) -> np.ndarray:
            t = torch.as_tensor(np.ascontiguousarray(x), dtype=self.dtype, device=self.device)
            return self.rmatmul(t).detach().cpu().numpy()

        return ScipyLO(self.shape, matvec=mm, matmat=mm, rmatvec=rmm, rmatmat=rmm, dtype=np_dtype)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, device={self.device})"
        )


class _Adjoint(LinearOperator):
    def __init__(self, op: LinearOperator) -> None:
        self._op = op
        self.shape = (op.shape[1], op.shape[0])
        self.dtype = op.dtype
        self.device = op.device

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        return self._op._rmatmat(x)

    def _rmatmat(self, x: torch.Tensor) -> torch.Tensor:
        return self._op._matmat(x)


class DenseOperator(LinearOperator):
    """A dense matrix as an operator (testing, small problems, exact references).

    Args:
        matrix: a 2-D tensor or array.
    """

    def __init__(self, matrix: torch.Tensor | np.ndarray) -> None:
        m = torch.as_tensor(matrix)
        if m.ndim != 2:
            raise ValueError(f"DenseOperator: matrix must be 2-D, got shape {tuple(m.shape)}")
        self.matrix = m
        self.shape = (int(m.shape[0]), int(m.shape[1]))
        self.dtype = m.dtype
        self.device = m.device

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        return self.matrix @ x

    def _rmatmat(self, x: torch.Tensor) -> torch.Tensor:
        return self.matrix.T @ x


class ScipyOperator(LinearOperator):
    """A scipy ``LinearOperator`` (or anything with ``matmat``) as a torch operator.

    Args:
        op: object with ``shape``, ``dtype`` (NumPy) and ``matmat``/``rmatmat`` (or ``@``).
        device: torch device of the tensors returned (products run in NumPy on the CPU).
    """

    def __init__(self, op: Any, device: torch.device | str = "cpu") -> None:
        self._op = op
        self.shape = (int(op.shape[0]), int(op.shape[1]))
        self.dtype = torch.from_numpy(np.empty(0, dtype=np.dtype(op.dtype))).dtype
        self.device = torch.device(device)

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        out = (
            self._op.matmat(x.detach().cpu().numpy())
            if hasattr(self._op, "matmat")
            else self._op @ x.detach().cpu().numpy()
        )
        return torch.as_tensor(np.asarray(out), dtype=self.dtype, device=self.device)

    def _rmatmat(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self._op, "rmatmat"):
            return super()._rmatmat(x)
        out = self._op.rmatmat(x.detach().cpu().numpy())
        return torch.as_tensor(np.asarray(out), dtype=self.dtype, device=self.device)


def _is_torch_operator(obj: Any) -> bool:
    try:
        return (
            len(obj.shape) == 2
            and isinstance(obj.dtype, torch.dtype)
            and hasattr(obj, "device")
            and hasattr(obj, "__matmul__")
        )
    except (AttributeError, TypeError):
        return False


def as_operator(obj: Any, device: torch.device | str | None = None) -> Operator:
    """Return ``obj`` as something that satisfies :class:`Operator`.

    Accepts our operators, any object that already speaks the protocol with torch dtypes
    (e.g. curvlinops 3.x operators, a 2-D ``torch.Tensor``), NumPy arrays and scipy
    ``LinearOperator``s / sparse matrices.

    Args:
        obj: the operator-like object.
        device: for NumPy/scipy inputs, the torch device of the products' results.

    Returns:
        An object with ``shape``, ``dtype``, ``device`` and ``@`` on torch tensors.

    Raises:
        TypeError: if ``obj`` cannot act as a linear operator.
    """
    if isinstance(obj, torch.Tensor):
        if obj.ndim != 2:
            raise TypeError(
                f"as_operator: a tensor operator must be 2-D, got shape {tuple(obj.shape)}"
            )
        return DenseOperator(obj)
    if isinstance(obj, LinearOperator) or _is_torch_operator(obj):
        if len(obj.shape) != 2:
            raise TypeError(f"as_operator: operator shape must be 2-D, got {obj.shape}")
        return obj
    if isinstance(obj, np.ndarray):
        return DenseOperator(torch.from_numpy(obj).to(device or "cpu"))
    if (
        hasattr(obj, "shape")
        and hasattr(obj, "dtype")
        and (hasattr(obj, "matmat") or hasattr(obj, "__matmul__"))
    ):
        return ScipyOperator(obj, device=device or "cpu")
    raise TypeError(
        f"as_operator: cannot use {type(obj).__name__} as a linear operator; it needs .shape, "
        ".dtype, .device and `@` on torch tensors (or be a tensor, array or scipy LinearOperator)"
    )
