"""The run identity sees the operator: architecture, loss and probe product (issue 14.4).

Each store is measured half (worker 0 of 2) with one operator, then resumed with another
one of the same parameter values, shapes and data: the resume must be refused, naming
the fields, and the store left as it was. The same operator resumes (also rebuilt in a
fresh process, and with another engine, which changes only rounding).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from _store_ops import LowRankPlusDiagonal  # noqa: E402

from curvsketch.operators import GGNOperator, HessianOperator  # noqa: E402
from curvsketch.sketch import SYMMETRY_PRODUCTS, seigh  # noqa: E402
from curvsketch.sketch.stored import measure, recover  # noqa: E402
from curvsketch.store import MemoryStore, StoreMismatchError, ZarrStore, fingerprint  # noqa: E402

OUTER, INNER, BLOCK = 8, 20, 5  # 4 blocks
KW = {"block_size": BLOCK, "progress": False}


def _data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def _mlp(act: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(4, 5), act(), nn.Linear(5, 3)).double()  # D = 43


class FunctionalAct(nn.Module):
    """An activation called as a plain function: ``repr`` does not show which."""

    def __init__(self, act) -> None:
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(4, 5), nn.Linear(5, 3), act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _smoothed(eps: float):
    def loss(out, y):  # same qualname for every eps: only the probe sees the difference
        return F.cross_entropy(out, y, label_smoothing=eps)

    return loss


def _half_store(path: Path, op) -> set[int]:
    st = measure(op, OUTER, INNER, store=path, worker=0, num_workers=2, **KW)
    return st.done_blocks()


def _refused(path: Path, op, *fields: str) -> str:
    before = sorted(p.name for p in (path / "done").iterdir())
    with pytest.raises(StoreMismatchError) as err:
        seigh(op, OUTER, INNER, store=path, **KW)
    msg = str(err.value)
    for f in fields:
        assert f in msg, msg
    assert str(path) in msg and "another store path" in msg
    assert sorted(p.name for p in (path / "done").iterdir()) == before  # nothing written
    return msg


def test_tanh_store_resumed_with_relu_net_is_refused(tmp_path) -> None:
    x, y = _data()
    tanh = _mlp(nn.Tanh)
    relu = _mlp(nn.ReLU)
    relu.load_state_dict(tanh.state_dict())  # same parameter values and shapes
    _half_store(tmp_path / "s", HessianOperator(tanh, F.cross_entropy, (x, y)))
    msg = _refused(tmp_path / "s", HessianOperator(relu, F.cross_entropy, (x, y)), "operator.model")
    assert "Tanh()" in msg and "ReLU()" in msg  # the first differing line of the reprs


def test_functional_activation_change_is_refused_by_the_probe(tmp_path) -> None:
    x, y = _data()
    torch.manual_seed(0)
    a = FunctionalAct(torch.tanh).double()
    b = FunctionalAct(torch.relu).double()
    b.load_state_dict(a.state_dict())
    assert repr(a) == repr(b)
    _half_store(tmp_path / "s", HessianOperator(a, F.cross_entropy, (x, y)))
    msg = _refused(tmp_path / "s", HessianOperator(b, F.cross_entropy, (x, y)), "operator.probe")
    assert "operator.model" not in msg and "H·v" in msg


@pytest.mark.parametrize(
    ("plain", "smoothed", "fields"),
    [
        (nn.CrossEntropyLoss(), nn.CrossEntropyLoss(label_smoothing=0.1), ["operator.loss"]),
        (
            F.cross_entropy,
            functools.partial(F.cross_entropy, label_smoothing=0.1),
            ["operator.loss", "label_smoothing=0.1"],
        ),
        (_smoothed(0.0), _smoothed(0.1), ["operator.probe"]),  # a closure: the probe sees it
    ],
)
def test_label_smoothing_store_is_refused(tmp_path, plain, smoothed, fields) -> None:
    x, y = _data()
    model = _mlp()
    _half_store(tmp_path / "s", HessianOperator(model, plain, (x, y)))
    _refused(tmp_path / "s", HessianOperator(model, smoothed, (x, y)), *fields)


def test_every_differing_field_is_named(tmp_path) -> None:
    x, y = _data()
    tanh, relu = _mlp(nn.Tanh), _mlp(nn.ReLU)
    relu.load_state_dict(tanh.state_dict())
    _half_store(tmp_path / "s", HessianOperator(tanh, F.cross_entropy, (x, y)))
    op = HessianOperator(relu, nn.CrossEntropyLoss(reduction="sum"), (x, y), reduction="sum")
    with pytest.raises(StoreMismatchError) as err:
        measure(op, OUTER, INNER, store=tmp_path / "s", seed=1, **KW)
    msg = str(err.value)
    for f in ("seed:", "operator.model", "operator.loss", "operator.reduction"):
        assert f in msg, msg
    assert op.num_products == 0  # refused before any product


def test_same_operator_resumes_with_another_engine(tmp_path) -> None:
    x, y = _data()
    model = _mlp()
    ref = seigh(HessianOperator(model, F.cross_entropy, (x, y)), OUTER, INNER, **KW)
    first = HessianOperator(model, F.cross_entropy, (x, y), engine="graph")
    assert _half_store(tmp_path / "s", first) == {0, 2}
    op = HessianOperator(_mlp(), F.cross_entropy, (x, y), engine="vmap")  # other rounding
    measure(op, OUTER, INNER, store=tmp_path / "s", **KW)
    res = recover(tmp_path / "s")
    scale = float(ref.eigenvalues.abs().max())
    assert float((res.eigenvalues - ref.eigenvalues).abs().max()) <= 1e-10 * scale
    # one probe product besides the two missing blocks, the symmetry check and the
    # operator's own determinism probe of two products; the result counts the sketch's s
    assert op.num_products == 2 * BLOCK + 1 + SYMMETRY_PRODUCTS + 2
    assert res.num_products == INNER


def test_same_operator_rebuilt_in_another_process_resumes(tmp_path) -> None:
    """Worker 0 in a fresh process, worker 1 here: equal to an uninterrupted run (the probe
    of a rebuilt operator agrees to rounding)."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from test_store_identity import _data, _mlp, OUTER, INNER, KW
        from torch.nn import functional as F
        from curvsketch.operators import GGNOperator
        from curvsketch.sketch.stored import measure
        x, y = _data()
        op = GGNOperator(_mlp(), F.cross_entropy, (x, y))
        measure(op, OUTER, INNER, store=sys.argv[1], worker=0, num_workers=2, **KW)
        """
    )
    path = tmp_path / "s"
    subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    x, y = _data()
    op = GGNOperator(_mlp(), F.cross_entropy, (x, y))
    ref = seigh(op, OUTER, INNER, **KW)
    measure(op, OUTER, INNER, store=path, worker=1, num_workers=2, **KW)
    res = recover(path)  # "auto" may pick another engine there: equal up to rounding
    scale = float(ref.eigenvalues.abs().max())
    assert float((res.eigenvalues - ref.eigenvalues).abs().max()) <= 1e-10 * scale


def test_probe_is_one_product_on_an_unhashed_operator(tmp_path) -> None:
    op = LowRankPlusDiagonal(60)
    widths: list[int] = []
    original = op._matmat
    op._matmat = lambda x: (widths.append(x.shape[1]), original(x))[1]
    measure(op, OUTER, INNER, store=tmp_path / "s", **KW)
    assert sorted(widths) == sorted([1, SYMMETRY_PRODUCTS] + [BLOCK] * (INNER // BLOCK))
    assert fingerprint(op)["probe"] is not None
    widths.clear()
    measure(op, OUTER, INNER, store=tmp_path / "s", **KW)  # complete: only the probe
    assert widths == [1]


def test_unhashed_operator_change_is_refused_in_memory() -> None:
    st = MemoryStore()
    measure(LowRankPlusDiagonal(60, seed=0), OUTER, INNER, store=st, **KW)
    with pytest.raises(StoreMismatchError, match=r"operator\.probe"):
        measure(LowRankPlusDiagonal(60, seed=1), OUTER, INNER, store=st, **KW)


def test_probe_is_compared_to_rounding_not_bitwise() -> None:
    from curvsketch.store.probe import probe_differences

    a = {"norm": 2.0, "vhv": 0.5, "proj": [0.1, -0.3, 1.0], "rtol": 1e-4}
    near = {**a, "vhv": 0.5 + 1e-5, "proj": [0.1, -0.3 - 1e-5, 1.0]}  # 5e-6 of ‖Hv‖
    far = {**a, "proj": [0.1, -0.3, 1.01]}  # 5e-3 of ‖Hv‖
    assert probe_differences(a, near) is None
    assert "differ by" in probe_differences(a, far)
    assert probe_differences({**a, "rtol": 1e-9}, {**near, "rtol": 1e-9}) is not None
    assert probe_differences(None, a) is not None


def test_store_of_the_previous_format_is_refused_for_measuring_but_recovers(tmp_path) -> None:
    path = tmp_path / "s"
    op = LowRankPlusDiagonal(60)
    first = seigh(op, OUTER, INNER, store=path, **KW)
    meta_file = path / "zarr.json"
    meta = json.loads(meta_file.read_text())
    attrs = meta["attributes"]["curvsketch"]
    attrs["format"] = "curvsketch.measurements/1"
    old = ("dim", "dtype", "kind", "params", "data", "matrix")
    attrs["identity"]["operator"] = {k: attrs["identity"]["operator"][k] for k in old}
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(StoreMismatchError, match="earlier curvsketch") as err:
        seigh(op, OUTER, INNER, store=path, **KW)
    assert "operator.probe" in str(err.value) and "another store path" in str(err.value)
    assert torch.equal(recover(path).eigenvalues, first.eigenvalues)
    st = ZarrStore(path)
    st.bind(st.stored_identity())
    assert st.is_complete()


def test_descriptions_are_stable_and_see_loss_settings() -> None:
    x, y = _data()
    weight = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)

    def build(w: torch.Tensor) -> HessianOperator:
        loss = functools.partial(F.cross_entropy, weight=w)
        return HessianOperator(_mlp(), loss, (x, y))

    a, b = fingerprint(build(weight), probe=False), fingerprint(build(weight.clone()), probe=False)
    assert a == b and "0x" not in a["loss"] and "sha256" in a["loss"]
    assert fingerprint(build(weight * 2), probe=False)["loss"] != a["loss"]


@pytest.mark.filterwarnings("ignore:.*batch-norm")
def test_batch_norm_statistics_are_part_of_the_identity(tmp_path) -> None:
    x, y = _data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).double()
    model.eval()
    _half_store(tmp_path / "s", HessianOperator(model, F.cross_entropy, (x, y)))
    with torch.no_grad():
        model[1].running_var.mul_(4.0)  # same parameters, another operator
    _refused(tmp_path / "s", HessianOperator(model, F.cross_entropy, (x, y)), "operator.buffers")
