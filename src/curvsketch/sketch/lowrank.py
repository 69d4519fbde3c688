"""Matrix-free low-rank operators ``L diag(d) Rᵀ`` with factored bases.

A sketched eigendecomposition keeps its eigenvectors as ``Q V`` (``Q`` D×o orthonormal,
``V`` o×o); a sketched SVD keeps ``U = Q W`` and ``V = P T``. Products with the
approximation never form those D×o products: ``A x = L_b (L_r (d ⊙ (R_rᵀ (R_bᵀ x))))``.
"""

from __future__ import annotations

import torch

from curvsketch.operators.protocol import LinearOperator

__all__ = ["LowRankOperator"]


class LowRankOperator(LinearOperator):
    """The operator ``(Lb Lr) diag(d) (Rb Rr)ᵀ`` applied in factored form.

    Args:
        left_basis: ``Lb`` of shape ``(M, o)``.
        diag: ``d`` of shape ``(k,)``.
        left_rot: ``Lr`` of shape ``(o, k)``, or ``None`` for the identity (``o == k``).
        right_basis: ``Rb`` of shape ``(N, p)``; ``None`` means symmetric (``R = L``).
        right_rot: ``Rr`` of shape ``(p, k)``, or ``None`` for the identity.
    """

    def __init__(
        self,
        left_basis: torch.Tensor,
        diag: torch.Tensor,
        left_rot: torch.Tensor | None = None,
        right_basis: torch.Tensor | None = None,
        right_rot: torch.Tensor | None = None,
    ) -> None:
        self.symmetric = right_basis is None
        if self.symmetric:
            right_basis, right_rot = left_basis, left_rot
        assert right_basis is not None
        k = diag.shape[0]
        for name, basis, rot in (("left", left_basis, left_rot), ("right", right_basis, right_rot)):
            width = rot.shape[1] if rot is not None else basis.shape[1]
            inner = rot.shape[0] if rot is not None else basis.shape[1]
            if basis.ndim != 2 or width != k or inner != basis.shape[1]:
                raise ValueError(
                    f"LowRankOperator: {name} factors {tuple(basis.shape)} and "
                    f"{None if rot is None else tuple(rot.shape)} do not match {k} values"
                )
        self.left_basis, self.left_rot = left_basis, left_rot
        self.right_basis, self.right_rot = right_basis, right_rot
        self.diag = diag
        self.shape = (int(left_basis.shape[0]), int(right_basis.shape[0]))
        self.dtype = left_basis.dtype
        self.device = left_basis.device

    @staticmethod
    def _apply(
        x: torch.Tensor,
        diag: torch.Tensor,
        in_basis: torch.Tensor,
        in_rot: torch.Tensor | None,
        out_basis: torch.Tensor,
        out_rot: torch.Tensor | None,
    ) -> torch.Tensor:
        t = in_basis.T @ x
        if in_rot is not None:
            t = in_rot.T @ t
        t = diag.to(t.dtype)[:, None] * t
        if out_rot is not None:
            t = out_rot @ t
        return out_basis @ t

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(
            x, self.diag, self.right_basis, self.right_rot, self.left_basis, self.left_rot
        )

    def _rmatmat(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(
            x, self.diag, self.left_basis, self.left_rot, self.right_basis, self.right_rot
        )
