"""Result objects: factored eigenvectors, rows, top, save/load, as_operator."""

from __future__ import annotations

import pickle
import re

import pytest
import torch

from curvsketch.operators.protocol import LinearOperator
from curvsketch.sketch import EighResult, ResultFileError, SvdResult, seigh, ssvd

D = 120


@pytest.fixture
def result(spectral, random_signs):
    lam = torch.arange(1, D + 1, dtype=torch.float64) ** -1.0 * random_signs(D)
    h, _ = spectral(lam)
    return seigh(h, 15, seed=2, progress=False)


def test_rows_match_materialised_eigenvectors(result):
    u = result.eigenvectors
    assert u.shape == result.shape == (D, 15)
    idx = torch.tensor([0, 5, 5, 119, 3])
    torch.testing.assert_close(result.rows(idx), u[idx], atol=1e-14, rtol=0)
    torch.testing.assert_close(result.rows([1, 2]), u[[1, 2]], atol=1e-14, rtol=0)
    torch.testing.assert_close(result.rows(slice(10, 20)), u[10:20], atol=1e-14, rtol=0)
    with pytest.raises(TypeError, match="integers"):
        result.rows(torch.tensor([0.5]))


def test_eigenvectors_are_orthonormal(result):
    u = result.eigenvectors
    torch.testing.assert_close(u.T @ u, torch.eye(15, dtype=torch.float64), atol=1e-12, rtol=0)


def test_top_keeps_the_largest_magnitudes_and_shares_storage(result):
    top = result.top(4)
    assert len(top) == 4 and top.shape == (D, 4)
    torch.testing.assert_close(top.eigenvalues, result.eigenvalues[:4])
    torch.testing.assert_close(top.eigenvectors, result.eigenvectors[:, :4])
    assert top.Q.data_ptr() == result.Q.data_ptr()
    assert (top.recovery, top.seed, top.outer) == (result.recovery, result.seed, result.outer)
    for bad in (0, 16, 2.0):
        with pytest.raises(ValueError, match=r"k must be an integer in \[1, 15\]"):
            result.top(bad)


def test_materialize(result):
    mat = result.materialize()
    assert mat.V is None
    torch.testing.assert_close(mat.eigenvectors, result.eigenvectors, atol=1e-14, rtol=0)
    torch.testing.assert_close(mat.rows([3]), result.rows([3]), atol=1e-14, rtol=0)
    assert mat.timings["eigvec"] >= result.timings["eigvec"]
    assert mat.top(3).Q.shape == (D, 3)
    assert mat.materialize() is mat


def test_as_operator_is_u_lambda_ut(result):
    op = result.as_operator()
    assert isinstance(op, LinearOperator)
    assert op.shape == (D, D) and op.dtype == torch.float64
    u = result.eigenvectors
    dense = (u * result.eigenvalues) @ u.T
    x = torch.randn(D, 3, dtype=torch.float64)
    torch.testing.assert_close(op @ x, dense @ x, atol=1e-13, rtol=0)
    torch.testing.assert_close(op @ x[:, 0], dense @ x[:, 0], atol=1e-13, rtol=0)
    torch.testing.assert_close(op.rmatmul(x), dense @ x, atol=1e-13, rtol=0)
    torch.testing.assert_close(
        result.materialize().as_operator() @ x, dense @ x, atol=1e-13, rtol=0
    )


def test_save_load_round_trip(result, tmp_path):
    path = tmp_path / "eigh.pt"
    result.save(path)
    back = EighResult.load(path)
    for name in ("eigenvalues", "Q", "V"):
        assert torch.equal(getattr(back, name), getattr(result, name))
    for name in ("recovery", "noise", "seed", "outer", "inner", "power_iters", "num_products"):
        assert getattr(back, name) == getattr(result, name)
    assert back.timings == result.timings
    # plain tensors and a dict: loadable with weights_only=True
    payload = torch.load(path, weights_only=True)
    assert payload["type"] == "EighResult" and payload["version"] == 1
    mat = result.materialize()
    mat.save(tmp_path / "mat.pt")
    assert EighResult.load(tmp_path / "mat.pt").V is None


def test_load_rejects_other_files(tmp_path):
    torch.save({"type": "SvdResult", "version": 1}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=r"holds a 'SvdResult', not an EighResult.*SvdResult.load"):
        EighResult.load(tmp_path / "x.pt")
    torch.save({"type": "EighResult", "version": 99}, tmp_path / "y.pt")
    with pytest.raises(ValueError, match="format version 99"):
        EighResult.load(tmp_path / "y.pt")


def test_result_validates_shapes():
    with pytest.raises(ValueError, match="eigenvalues must be 1-D"):
        EighResult(torch.zeros(2, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="do not give 3 columns"):
        EighResult(torch.zeros(3), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="do not give 3 columns"):
        EighResult(torch.zeros(3), torch.zeros(5, 4), torch.zeros(3, 3))


def test_repr_is_short(result):
    text = repr(result)
    assert text.startswith("EighResult(k=15, D=120") and len(text) < 300


@pytest.fixture
def svd_result():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 6, generator=g, dtype=torch.float64) @ torch.randn(
        6, 30, generator=g, dtype=torch.float64
    )
    return a, ssvd(a, 8, progress=False)


def test_svd_result_rows_top_operator_and_round_trip(svd_result, tmp_path):
    _, res = svd_result
    assert res.op_shape == (50, 30) and len(res) == 8
    u, v = res.U, res.V
    assert u.shape == (50, 8) and v.shape == (30, 8)
    torch.testing.assert_close(res.u_rows([1, 4]), u[[1, 4]], atol=1e-14, rtol=0)
    torch.testing.assert_close(res.v_rows(torch.tensor([0, 29])), v[[0, 29]], atol=1e-14, rtol=0)
    x = torch.randn(30, 2, dtype=torch.float64)
    dense = (u * res.singular_values) @ v.T
    torch.testing.assert_close(res.as_operator() @ x, dense @ x, atol=1e-12, rtol=0)
    y = torch.randn(50, 2, dtype=torch.float64)
    torch.testing.assert_close(res.as_operator().rmatmul(y), dense.T @ y, atol=1e-12, rtol=0)
    top = res.top(3)
    torch.testing.assert_close(top.U, u[:, :3])
    torch.testing.assert_close(top.V, v[:, :3])
    res.save(tmp_path / "svd.pt")
    back = SvdResult.load(tmp_path / "svd.pt")
    assert torch.equal(back.singular_values, res.singular_values)
    assert torch.equal(back.left_basis, res.left_basis)
    assert (back.noise, back.seed, back.outer, back.inner) == (res.noise, res.seed, 8, 16)
    assert "SvdResult(k=8, shape=(50, 30)" in repr(res)


def _bad_files(tmp_path, result):
    """(file, what the message must say) for every kind of bad file."""
    good = tmp_path / "good.pt"
    result.save(good)
    data = good.read_bytes()
    files = {
        "text.pt": (b"not a torch file\n", "is not a torch file"),
        "empty.pt": (b"", "is empty"),
        "truncated.pt": (data[: len(data) // 2], "is not a torch file, or is truncated"),
        "pickle.pt": (pickle.dumps({"a": 1}, protocol=4), None),
    }
    out = []
    for name, (content, match) in files.items():
        (tmp_path / name).write_bytes(content)
        out.append((tmp_path / name, match))
    torch.save({"weights": torch.zeros(3)}, tmp_path / "state_dict.pt")
    out.append((tmp_path / "state_dict.pt", r"holds a dict with keys \['weights'\], not an"))
    torch.save([1, 2], tmp_path / "list.pt")
    out.append((tmp_path / "list.pt", "holds a list, not an EighResult"))
    payload = torch.load(good, weights_only=True)
    del payload["tensors"]["Q"]
    torch.save(payload, tmp_path / "no_q.pt")
    out.append((tmp_path / "no_q.pt", "damaged EighResult file: missing Q"))
    payload = torch.load(good, weights_only=True)
    del payload["meta"]
    torch.save(payload, tmp_path / "no_meta.pt")
    out.append((tmp_path / "no_meta.pt", "damaged EighResult file: missing meta"))
    payload = torch.load(good, weights_only=True)
    payload["tensors"]["eigenvalues"] = payload["tensors"]["eigenvalues"][:3]
    torch.save(payload, tmp_path / "inconsistent.pt")
    out.append((tmp_path / "inconsistent.pt", "damaged EighResult file: .*do not give 3 columns"))
    return out


def test_load_of_a_bad_file_names_the_file_and_the_problem(tmp_path, result):
    # Before: torch's own errors ("invalid load key", "failed finding central directory",
    # KeyError 'tensors', TypeError from the constructor), one advising weights_only=False.
    for path, match in _bad_files(tmp_path, result):
        with pytest.raises(ResultFileError) as info:
            EighResult.load(path)
        message = str(info.value)
        assert message.startswith(f"{path}: "), message
        assert "weights_only" not in message and "\n" not in message
        if match is not None:
            assert re.search(match, message), message
    with pytest.raises(FileNotFoundError, match=r"missing.pt: no such file"):
        EighResult.load(tmp_path / "missing.pt")
    with pytest.raises(ResultFileError, match="is a directory"):
        EighResult.load(tmp_path)
    assert EighResult.load(tmp_path / "good.pt").eigenvalues.shape == result.eigenvalues.shape


def test_orthonormality_error_from_the_factors(result):
    dense = result.eigenvectors
    want = float((dense.T @ dense - torch.eye(len(result), dtype=dense.dtype)).abs().max())
    assert result.orthonormality_error() == pytest.approx(want, abs=1e-14)
    assert result.orthonormality_error() < 1e-12
    top = result.top(5)
    assert "_gram" in top.__dict__  # the cached QᵀQ is shared, not recomputed
    assert top.orthonormality_error(3) <= 1e-12
    bad = EighResult(result.eigenvalues, 2 * result.Q, result.V)
    assert bad.orthonormality_error() == pytest.approx(3.0, abs=1e-10)
