"""Immutable results of sketched decompositions: :class:`EighResult` and :class:`SvdResult`.

Eigenvectors stay factored as ``Q @ V`` (``Q`` D×o orthonormal, ``V`` o×k), which is how
the single-pass recovery produces them (Fernandez et al., TMLR 2025, §3): forming
the D×k product costs as much as the QR and doubles the memory, and the analysis layer only
needs rows of it (``rows(index) = Q[index] @ V``). ``eigenvectors`` materialises on demand.
Results carry the settings and seeds that made them, the number of operator products and
per-stage timings, and save to / load from a ``torch.save`` file of plain tensors and a
dict (loadable with ``weights_only=True``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from curvsketch.sketch.lowrank import LowRankOperator
from curvsketch.sketch.result_io import ResultFileError, build, save

__all__ = ["EighResult", "ResultFileError", "SvdResult"]

Index = torch.Tensor | slice | list[int] | tuple[int, ...]


def _index(index: Index, device: torch.device) -> torch.Tensor | slice:
    if isinstance(index, slice):
        return index
    idx = torch.as_tensor(index)
    if idx.dtype == torch.bool or idx.is_floating_point():
        raise TypeError(f"rows: index must hold integers, got dtype {idx.dtype}")
    return idx.to(device=device, dtype=torch.long)


def _rows(basis: torch.Tensor, rot: torch.Tensor | None, index: Index) -> torch.Tensor:
    block = basis[_index(index, basis.device)]
    return block if rot is None else block @ rot


def _check_top(k: int, available: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        raise ValueError(f"top(k): k must be an integer in [1, {available}], got {k!r}")


def _check_factor(name: str, basis: torch.Tensor, rot: torch.Tensor | None, k: int) -> None:
    width = basis.shape[1] if rot is None else rot.shape[1]
    if basis.ndim != 2 or width != k or (rot is not None and rot.shape[0] != basis.shape[1]):
        raise ValueError(
            f"{name}: basis {tuple(basis.shape)} and rotation "
            f"{None if rot is None else tuple(rot.shape)} do not give {k} columns"
        )


@dataclass(frozen=True, repr=False, eq=False)
class EighResult:
    """Eigenpairs ``H ≈ U diag(λ) Uᵀ`` of a symmetric operator, ``U = Q @ V``.

    Eigenpairs are sorted as :attr:`which` asks: by ``|λ|`` descending (``"LM"``, signs
    kept), descending (``"LA"``) or ascending (``"SA"``).

    Attributes:
        eigenvalues: ``(k,)``.
        Q: ``(D, o)`` orthonormal basis.
        V: ``(o, k)`` rotation, or ``None`` when ``Q`` already holds the eigenvectors.
        recovery: ``"singlepass"``, ``"tropp"``, ``"hmt"``, ``"nystrom"`` or ``"krylov"``.
        noise: test-operator kind.
        seed: the user seed of the test operators.
        outer: sketch size ``o``.
        inner: inner sketch size ``s`` (single pass), the basis size ``m`` (krylov), else
            ``None``.
        power_iters: subspace iterations (``"hmt"``).
        num_products: operator products spent.
        timings: seconds per stage (``measure``, ``qr``, ``core``, ``eigh``, ``eigvec``).
        ritz_values: ``(k,)`` Rayleigh–Ritz values ``θ`` (``"hmt"``, ``"krylov"``; else
            ``None``). The ``eigenvalues`` of such a result are ``sign(θ)·√(θ² + r²)``
            (see :func:`curvsketch.sketch.hmt.recover_hmt`); for ``which="LA"``/``"SA"`` they
            are the Ritz values.
        residual_norms: ``(k,)`` residuals ``r = ‖H u − θ u‖`` (``"hmt"``, ``"krylov"``;
            else ``None``):
            an eigenvalue of ``H`` lies in ``[θ − r, θ + r]``, see :meth:`eigenvalue_bounds`.
        which: ``"LM"`` (largest ``|λ|``), ``"LA"`` (largest algebraic) or ``"SA"``
            (smallest algebraic); files written before the field existed load as ``"LM"``.
    """

    eigenvalues: torch.Tensor
    Q: torch.Tensor
    V: torch.Tensor | None = None
    recovery: str = "singlepass"
    noise: str = "ssrft"
    seed: int = 0
    outer: int = 0
    inner: int | None = None
    power_iters: int = 0
    num_products: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    ritz_values: torch.Tensor | None = None
    residual_norms: torch.Tensor | None = None
    which: str = "LM"

    def __post_init__(self) -> None:
        if self.which not in ("LM", "LA", "SA"):
            raise ValueError(f"which must be 'LM', 'LA' or 'SA', got {self.which!r}")
        if self.eigenvalues.ndim != 1:
            raise ValueError(f"eigenvalues must be 1-D, got {tuple(self.eigenvalues.shape)}")
        _check_factor("EighResult", self.Q, self.V, self.eigenvalues.shape[0])
        for name in ("ritz_values", "residual_norms"):
            extra = getattr(self, name)
            if extra is not None and tuple(extra.shape) != tuple(self.eigenvalues.shape):
                raise ValueError(
                    f"{name} must have the shape of eigenvalues "
                    f"{tuple(self.eigenvalues.shape)}, got {tuple(extra.shape)}"
                )

    @property
    def shape(self) -> tuple[int, int]:
        """``(D, k)``: the shape of the eigenvector matrix."""
        return (int(self.Q.shape[0]), int(self.eigenvalues.shape[0]))

    @property
    def dim(self) -> int:
        """``D``."""
        return int(self.Q.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        """dtype of ``Q``."""
        return self.Q.dtype

    @property
    def device(self) -> torch.device:
        """device of ``Q``."""
        return self.Q.device

    def __len__(self) -> int:
        return int(self.eigenvalues.shape[0])

    @property
    def eigenvectors(self) -> torch.Tensor:
        """The ``(D, k)`` eigenvectors ``Q @ V``; formed on each access (use :meth:`rows`,
        :meth:`materialize` or :meth:`as_operator` to avoid it)."""
        return self.Q if self.V is None else self.Q @ self.V

    def rows(self, index: Index) -> torch.Tensor:
        """Rows ``eigenvectors[index]`` as ``Q[index] @ V``, without forming D×k.

        Args:
            index: 1-D integer tensor/sequence (or a slice) of row indices.

        Returns:
            ``(len(index), k)`` tensor.
        """
        return _rows(self.Q, self.V, index)

    def top(self, k: int) -> EighResult:
        """The first ``k`` eigenpairs in the order of :attr:`which` (largest ``|λ|`` for
        ``"LM"``; shares storage with this result)."""
        _check_top(k, len(self))
        extra = {
            name: None if getattr(self, name) is None else getattr(self, name)[:k]
            for name in ("ritz_values", "residual_norms")
        }
        if self.V is None:
            return replace(self, eigenvalues=self.eigenvalues[:k], Q=self.Q[:, :k], **extra)
        out = replace(self, eigenvalues=self.eigenvalues[:k], V=self.V[:, :k], **extra)
        if "_gram" in self.__dict__:  # same Q: share the cached QᵀQ
            out.__dict__["_gram"] = self.__dict__["_gram"]
        return out

    def eigenvalue_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Guaranteed intervals ``[θ − r, θ + r]``, each holding an eigenvalue of ``H``.

        For a symmetric ``H`` and a unit vector ``u``, some eigenvalue lies within
        ``‖H u − θ u‖`` of the Rayleigh quotient ``θ = uᵀHu`` (Parlett, "The Symmetric
        Eigenvalue Problem", ch. 4). The residuals include a rounding floor
        ``(√D + m)·eps·‖H‖`` (:mod:`curvsketch.sketch.residuals`), so the intervals hold for
        operators whose products are accurate to that level (dense and float64 Hessian
        products; float32 ones that lose more digits can still miss by their own error);
        the intervals of neighbouring pairs may hold the same eigenvalue.

        Returns:
            ``(lower, upper)``, each ``(k,)``, in the order of :attr:`eigenvalues`.

        Raises:
            ValueError: the result has no residuals (``"hmt"`` and ``"krylov"`` measure them:
                both products with ``U`` are at hand; single-pass and Nyström results do not).
        """
        if self.ritz_values is None or self.residual_norms is None:
            raise ValueError(
                f"eigenvalue_bounds: a {self.recovery!r} result has no residual norms; use "
                "recovery='hmt' or 'krylov' (they measure H·U), or estimate the overall "
                "error with curvsketch.aposteriori_error"
            )
        return self.ritz_values - self.residual_norms, self.ritz_values + self.residual_norms

    def orthonormality_error(self, k: int | None = None) -> float | None:
        """``max |UₖᵀUₖ − I|`` for the first ``k`` eigenvectors, from the factors.

        ``UₖᵀUₖ = V[:, :k]ᵀ (QᵀQ) V[:, :k]``; the ``o × o`` Gram ``QᵀQ`` (one ``D·o²``
        product, in float64) is computed on the first call and cached with the result (and
        shared with :meth:`top`), so the analysis layer checks a result without reading its
        rows again (:func:`curvsketch.analysis.angles.check_basis`).

        Args:
            k: leading eigenvectors (default all).

        Returns:
            The error as a float, or ``None`` when ``Q`` is not an in-memory tensor (an
            out-of-core :class:`curvsketch.store.ZarrMatrix`): then stream its rows.
        """
        k = len(self) if k is None else int(k)
        _check_top(k, len(self))
        gram = self._q_gram()
        if gram is None:
            return None
        if self.V is None:
            g = gram[:k, :k]
        else:
            v = self.V[:, :k].to(device=gram.device, dtype=torch.float64)
            g = v.T @ gram @ v
        eye = torch.eye(k, dtype=g.dtype, device=g.device)
        return float((g - eye).abs().max())

    def _q_gram(self) -> torch.Tensor | None:
        if not isinstance(self.Q, torch.Tensor):
            return None
        version = (self.Q.data_ptr(), self.Q._version, tuple(self.Q.shape))
        cached = self.__dict__.get("_gram")
        if cached is None or cached[0] != version:
            o = int(self.Q.shape[1])
            gram = torch.zeros((o, o), dtype=torch.float64, device=self.Q.device)
            step = max(1, 2**22 // max(o, 1))  # float64 blocks of ~32 MiB
            for start in range(0, int(self.Q.shape[0]), step):
                block = self.Q[start : start + step].to(torch.float64)
                gram.addmm_(block.T, block)
            cached = (version, gram)
            self.__dict__["_gram"] = cached  # a cache, not a field: frozen stays frozen
        return cached[1]

    def materialize(self) -> EighResult:
        """A result whose ``Q`` holds the eigenvectors (``V = None``); times ``eigvec``."""
        if self.V is None:
            return self
        t0 = time.perf_counter()
        vectors = self.Q @ self.V
        timings = dict(self.timings)
        timings["eigvec"] = timings.get("eigvec", 0.0) + time.perf_counter() - t0
        return replace(self, Q=vectors, V=None, timings=timings)

    @property
    def approximation_values(self) -> torch.Tensor:
        """The values of the low-rank approximation ``U diag(·) Uᵀ``: the Rayleigh–Ritz
        values when the result has them (the best ``Q M Qᵀ`` in Frobenius norm), else
        :attr:`eigenvalues`."""
        return self.eigenvalues if self.ritz_values is None else self.ritz_values

    def as_operator(self) -> LowRankOperator:
        """The approximation ``U diag(λ) Uᵀ`` as a matrix-free symmetric operator, with
        ``λ`` = :attr:`approximation_values`."""
        return LowRankOperator(self.Q, self.approximation_values, self.V)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path`` with ``torch.save`` (plain tensors and a dict)."""
        save(self, "EighResult", path, ["eigenvalues", "Q", "V", "ritz_values", "residual_norms"])

    @classmethod
    def load(cls, path: str | os.PathLike[str], map_location: Any = "cpu") -> EighResult:
        """Read a result written by :meth:`save` (``torch.load(..., weights_only=True)``).

        Raises:
            FileNotFoundError: no file at ``path``.
            ResultFileError: (a ``ValueError``) the file is not an ``EighResult`` written by
                :meth:`save` (not a torch file, truncated, another object, missing or
                inconsistent fields); the message names the file and the problem.
        """
        return build(cls, path, map_location)

    def __repr__(self) -> str:
        head = ", ".join(f"{v:.4g}" for v in self.eigenvalues[:3].tolist())
        more = ", …" if len(self) > 3 else ""
        return (
            f"EighResult(k={len(self)}, D={self.dim}, eigenvalues=[{head}{more}], "
            f"recovery={self.recovery!r}, noise={self.noise!r}, seed={self.seed}, "
            f"outer={self.outer}, inner={self.inner}, num_products={self.num_products}"
            f"{'' if self.which == 'LM' else f', which={self.which!r}'})"
        )


@dataclass(frozen=True, repr=False, eq=False)
class SvdResult:
    """Singular triplets ``A ≈ U diag(σ) Vᵀ`` of an ``M × N`` operator, factored.

    ``U = left_basis @ left_rot`` and ``V = right_basis @ right_rot``; ``σ`` descending.

    Attributes:
        singular_values: ``(k,)``.
        left_basis: ``(M, o)`` orthonormal basis ``Q`` of the range.
        left_rot: ``(o, k)`` or ``None``.
        right_basis: ``(N, o)`` orthonormal basis ``P`` of the co-range.
        right_rot: ``(o, k)`` or ``None``.
        noise, seed, outer, inner, num_products, timings: as in :class:`EighResult`.
    """

    singular_values: torch.Tensor
    left_basis: torch.Tensor
    left_rot: torch.Tensor | None
    right_basis: torch.Tensor
    right_rot: torch.Tensor | None
    noise: str = "ssrft"
    seed: int = 0
    outer: int = 0
    inner: int | None = None
    num_products: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.singular_values.ndim != 1:
            raise ValueError(
                f"singular_values must be 1-D, got {tuple(self.singular_values.shape)}"
            )
        k = self.singular_values.shape[0]
        _check_factor("SvdResult (left)", self.left_basis, self.left_rot, k)
        _check_factor("SvdResult (right)", self.right_basis, self.right_rot, k)

    @property
    def op_shape(self) -> tuple[int, int]:
        """``(M, N)``: the shape of the approximated operator."""
        return (int(self.left_basis.shape[0]), int(self.right_basis.shape[0]))

    def __len__(self) -> int:
        return int(self.singular_values.shape[0])

    @property
    def U(self) -> torch.Tensor:
        """Left singular vectors ``(M, k)``, formed on access."""
        return self.left_basis if self.left_rot is None else self.left_basis @ self.left_rot

    @property
    def V(self) -> torch.Tensor:
        """Right singular vectors ``(N, k)``, formed on access."""
        return self.right_basis if self.right_rot is None else self.right_basis @ self.right_rot

    def u_rows(self, index: Index) -> torch.Tensor:
        """Rows ``U[index]`` without forming ``U``."""
        return _rows(self.left_basis, self.left_rot, index)

    def v_rows(self, index: Index) -> torch.Tensor:
        """Rows ``V[index]`` without forming ``V``."""
        return _rows(self.right_basis, self.right_rot, index)

    def top(self, k: int) -> SvdResult:
        """The ``k`` largest singular triplets (shares storage with this result)."""
        _check_top(k, len(self))
        lb, lr, rb, rr = self.left_basis, self.left_rot, self.right_basis, self.right_rot
        lb, lr = (lb[:, :k], None) if lr is None else (lb, lr[:, :k])
        rb, rr = (rb[:, :k], None) if rr is None else (rb, rr[:, :k])
        return replace(
            self,
            singular_values=self.singular_values[:k],
            left_basis=lb,
            left_rot=lr,
            right_basis=rb,
            right_rot=rr,
        )

    def as_operator(self) -> LowRankOperator:
        """The approximation ``U diag(σ) Vᵀ`` as a matrix-free operator."""
        return LowRankOperator(
            self.left_basis, self.singular_values, self.left_rot, self.right_basis, self.right_rot
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path`` with ``torch.save`` (plain tensors and a dict)."""
        names = ["singular_values", "left_basis", "left_rot", "right_basis", "right_rot"]
        save(self, "SvdResult", path, names)

    @classmethod
    def load(cls, path: str | os.PathLike[str], map_location: Any = "cpu") -> SvdResult:
        """Read a result written by :meth:`save` (``torch.load(..., weights_only=True)``)."""
        return build(cls, path, map_location)

    def __repr__(self) -> str:
        m, n = self.op_shape
        head = ", ".join(f"{v:.4g}" for v in self.singular_values[:3].tolist())
        return (
            f"SvdResult(k={len(self)}, shape=({m}, {n}), singular_values=[{head}"
            f"{', …' if len(self) > 3 else ''}], noise={self.noise!r}, seed={self.seed}, "
            f"outer={self.outer}, inner={self.inner}, num_products={self.num_products})"
        )
