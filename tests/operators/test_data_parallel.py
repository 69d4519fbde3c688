"""DataParallelOperator: shards, the T_r/T weighting, world size 1, and a real torchrun run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from curvsketch.operators import (
    DataParallelOperator,
    DenseOperator,
    GGNOperator,
    HessianOperator,
    combine_shards,
    count_targets,
    data_parallel_operator,
    shard_data,
    shard_samples,
    shard_weight,
)
from oracles import classification_data, oracle_ggn, oracle_hessian, tanh_mlp
from torchrun_launch import run_torchrun

TOL = 1e-10
HERE = Path(__file__).resolve().parent
WORKER = HERE / "_data_parallel_worker.py"


def rel(a, b):
    return float((a - b).norm() / b.norm())


def ce_ignore(out, t):
    return F.cross_entropy(out, t, ignore_index=-100)


# ---------------------------------------------------------------------- shards
@pytest.mark.parametrize(("n", "world"), [(10, 1), (10, 3), (41, 2), (7, 7), (100, 6)])
def test_shard_samples_cover_the_range_contiguously(n, world):
    ranges = [shard_samples(n, r, world) for r in range(world)]
    assert [i for r in ranges for i in r] == list(range(n))
    sizes = [len(r) for r in ranges]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((3, 0, 4), "leaves 1 rank"),
        ((10, 2, 2), "rank=2 must be < world=2"),
        ((10, -1, 2), "rank must be an integer >= 0"),
        ((10, 0, 0), "world must be an integer >= 1"),
        ((0, 0, 1), "n must be an integer >= 1"),
    ],
)
def test_shard_samples_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        shard_samples(*args)


def test_shard_data_splits_samples_across_batch_boundaries():
    X, y = classification_data(n=23)
    batches = [(X[:5], y[:5]), (X[5:17], y[5:17]), (X[17:], y[17:])]
    for data in (batches, (X, y)):
        shards = [shard_data(data, r, 4) for r in range(4)]
        xs = torch.cat([b[0] for s in shards for b in s])
        ys = torch.cat([b[1] for s in shards for b in s])
        assert torch.equal(xs, X) and torch.equal(ys, y)
        assert [sum(len(b[1]) for b in s) for s in shards] == [6, 6, 6, 5]
    assert [len(shard_data(batches, r, 4)) for r in range(4)] == [2, 1, 2, 1]  # [0:6) spans 2
    with pytest.raises(ValueError, match="rank and world must be given together"):
        shard_data((X, y), 0)
    with pytest.raises(ValueError, match="batch 0 is not an"):
        shard_data([(X, y, y)], 0, 2)


def test_shard_weight_and_combine_validate():
    assert shard_weight(3, 12) == 0.25
    with pytest.raises(ValueError, match="local_terms <= total_terms"):
        shard_weight(5, 4)
    with pytest.raises(ValueError, match="2 parts for 1 term counts"):
        combine_shards([torch.ones(2), torch.ones(2)], [1])


# ---------------------------------------------------------------------- weighting
def _shard_products(cls, model, loss, data, world, V, **kw):
    ops = [cls(model, loss, shard_data(data, r, world), **kw) for r in range(world)]
    return [op @ V for op in ops], [op.samples.num_terms for op in ops], ops


@pytest.mark.parametrize("world", [2, 3, 5])
def test_weighted_shards_equal_the_full_hessian(world):
    model = tanh_mlp()
    X, y = classification_data(n=41)
    H = oracle_hessian(model, F.cross_entropy, X, y)
    V = torch.randn(H.shape[0], 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    parts, terms, _ = _shard_products(HessianOperator, model, F.cross_entropy, (X, y), world, V)
    assert rel(combine_shards(parts, terms), H @ V) < TOL


def test_weights_count_loss_terms_not_samples():
    """Ignored targets all on one shard: the naive average of the shards is far off."""
    model = tanh_mlp()
    X, y = classification_data(n=40)
    y[:14] = -100
    H = oracle_hessian(model, ce_ignore, X, y)
    V = torch.randn(H.shape[0], 9, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    parts, terms, _ = _shard_products(
        HessianOperator, model, ce_ignore, (X, y), 2, V, num_loss_terms=count_targets(-100)
    )
    assert terms == [6, 20]
    assert rel(combine_shards(parts, terms), H @ V) < TOL
    assert rel((parts[0] + parts[1]) / 2, H @ V) > 1e-2  # the test can fail


def test_weights_with_sum_reduction_and_ggn():
    model = tanh_mlp()
    X, y = classification_data(n=31)

    def ce_sum(out, t):
        return F.cross_entropy(out, t, reduction="sum")

    G = oracle_ggn(model, F.cross_entropy, X, y)
    V = torch.randn(G.shape[0], 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    parts, terms, _ = _shard_products(
        GGNOperator, model, ce_sum, (X, y), 3, V, reduction="sum", micro_batch_size=4
    )
    assert rel(combine_shards(parts, terms), G @ V) < TOL


def test_weighted_gradients_equal_the_full_gradient():
    model = tanh_mlp()
    X, y = classification_data(n=41)
    full = HessianOperator(model, F.cross_entropy, (X, y)).gradient()
    ops = [HessianOperator(model, F.cross_entropy, shard_data((X, y), r, 3)) for r in range(3)]
    grads = [op.gradient() for op in ops]
    assert rel(combine_shards(grads, [op.samples.num_terms for op in ops]), full) < TOL


# ---------------------------------------------------------------------- one process
def test_world_size_one_is_the_plain_operator():
    model = tanh_mlp()
    X, y = classification_data(n=20)
    plain = HessianOperator(model, F.cross_entropy, (X, y))
    dp = data_parallel_operator(model, F.cross_entropy, (X, y))
    assert isinstance(dp, DataParallelOperator) and dp.collective
    assert (dp.rank, dp.world_size, dp.weight) == (0, 1, 1.0)
    assert dp.local_terms == dp.total_terms == 20
    assert dp.shape == plain.shape and dp.dtype == plain.dtype and dp.device == plain.device
    V = torch.randn(plain.shape[0], 4, dtype=torch.float64)
    assert torch.allclose(dp @ V, plain @ V, rtol=1e-13, atol=0)
    assert torch.allclose(dp @ V[:, 0], plain @ V[:, 0], rtol=1e-13, atol=0)
    assert torch.allclose(dp.gradient(), plain.gradient(), rtol=1e-13, atol=0)
    assert torch.equal(dp.parameter_vector(), plain.parameter_vector())
    assert dp.num_products == 5 and dp.model is model and dp.param_names == plain.param_names
    assert "rank=0/1" in repr(dp)


def test_world_size_one_process_group(tmp_path):
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        dp = DataParallelOperator(DenseOperator(torch.eye(3, dtype=torch.float64)), terms=2)
        assert dp.world_size == 1 and dp.weight == 1.0
        assert torch.equal(dp @ torch.ones(3, 2, dtype=torch.float64), torch.ones(3, 2))
    finally:
        dist.destroy_process_group()


def test_construction_errors_name_the_fix():
    X, y = classification_data(n=8)
    with pytest.raises(TypeError, match="pass terms="):
        DataParallelOperator(DenseOperator(torch.eye(3, dtype=torch.float64)))
    with pytest.raises(ValueError, match="must be square"):
        DataParallelOperator(DenseOperator(torch.ones(3, 2, dtype=torch.float64)), terms=1)
    with pytest.raises(ValueError, match="terms must be a positive integer"):
        DataParallelOperator(DenseOperator(torch.eye(3, dtype=torch.float64)), terms=0)
    with pytest.raises(ValueError, match="kind must be 'hessian' or 'ggn'"):
        data_parallel_operator(tanh_mlp(), F.cross_entropy, (X, y), kind="fisher")
    with pytest.raises(ValueError, match="micro_batch_size"):  # the local error, unchanged
        data_parallel_operator(tanh_mlp(), F.cross_entropy, (X, y), micro_batch_size=0)


# ---------------------------------------------------------------------- torchrun, 2 ranks
def _load_worker():
    spec = importlib.util.spec_from_file_location("_data_parallel_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torchrun(out: Path) -> None:
    run_torchrun(WORKER, str(out))


def _aligned(x, ref):
    """Flip eigenvector signs of ``x`` to match ``ref`` (columns)."""
    return x * torch.sign((x * ref).sum(0)) if x.ndim == 2 else x


def test_torchrun_two_ranks_equal_one_process(tmp_path):
    _torchrun(tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    worker = _load_worker()
    model, loss, data, options = worker.problem()
    reference = worker.solve(HessianOperator(model, loss, data, **options))

    assert [r["meta"]["local_terms"] for r in ranks] == [12, 20]  # 9 ignored targets on rank 0
    assert all(r["meta"]["total_terms"] == 32 for r in ranks)
    for key, ref in reference.items():
        for r in ranks:
            got = _aligned(r["result"][key], ref)
            assert rel(got, ref) <= TOL, f"{key}: relative difference {rel(got, ref):.2e}"
        assert torch.equal(ranks[0]["result"][key], ranks[1]["result"][key]), key

    e0, e1 = (r["errors"] for r in ranks)
    for key in ("different_x", "different_width", "different_dim", "different_params"):
        assert e0[key] == e1[key] and e0[key].startswith("ValueError"), (key, e0[key], e1[key])
    assert "X on rank(s) [1] differs" in e0["different_x"]
    assert "widths [2, 3]" in e0["different_width"]
    assert "dimension D: [4, 5]" in e0["different_dim"]
    assert "parameters on rank(s) [1]" in e0["different_params"]
    assert e0["local_failure"].startswith("RuntimeError") and "rank(s) [1]" in e0["local_failure"]
    assert e1["local_failure"] == "FloatingPointError: deliberate failure on rank 1"
    for e in (e0, e1):
        assert "failed to build on rank(s) [0, 1]" in e["too_few_samples"]
        assert "leaves 1 rank(s) without samples" in e["too_few_samples"]
