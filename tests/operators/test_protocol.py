"""The operator protocol and its adapters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curvsketch.operators import DenseOperator, Operator, ScipyOperator, as_operator


def test_tensor_satisfies_protocol_and_adapts():
    A = torch.randn(5, 5, dtype=torch.float64)
    assert isinstance(A, Operator)
    op = as_operator(A)
    x = torch.randn(5, 2, dtype=torch.float64)
    assert torch.allclose(op @ x, A @ x)
    assert torch.allclose(op.T @ x, A.T @ x)


def test_scipy_linear_operator_round_trip():
    from scipy.sparse.linalg import aslinearoperator

    A = np.random.default_rng(0).standard_normal((6, 4))
    op = as_operator(aslinearoperator(A))
    assert isinstance(op, ScipyOperator)
    assert op.shape == (6, 4) and op.dtype == torch.float64
    x = torch.randn(4, 3, dtype=torch.float64)
    assert torch.allclose(op @ x, torch.from_numpy(A) @ x)
    y = torch.randn(6, dtype=torch.float64)
    assert torch.allclose(op.rmatmul(y), torch.from_numpy(A).T @ y)
    back = op.to_scipy()
    assert np.allclose(back @ x.numpy(), A @ x.numpy())


def test_numpy_and_sparse_inputs():
    import scipy.sparse as sp

    A = np.eye(4) * 3
    assert torch.allclose(
        as_operator(A) @ torch.ones(4, dtype=torch.float64),
        torch.full((4,), 3.0, dtype=torch.float64),
    )
    S = sp.random(5, 5, density=0.5, random_state=0, format="csr")
    out = as_operator(S) @ torch.ones(5, dtype=torch.float64)
    assert np.allclose(out.numpy(), S @ np.ones(5))


def test_dense_operator_to_scipy_for_eigsh():
    from scipy.sparse.linalg import eigsh

    A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    vals = eigsh(DenseOperator(A).to_scipy(), k=2, which="LA")[0]
    assert np.allclose(sorted(vals), [9.0, 10.0])


def test_bad_inputs():
    with pytest.raises(TypeError, match="2-D"):
        as_operator(torch.ones(3))
    with pytest.raises(TypeError, match="cannot use"):
        as_operator("not an operator")
    with pytest.raises(ValueError, match="2-D"):
        DenseOperator(np.ones(3))
