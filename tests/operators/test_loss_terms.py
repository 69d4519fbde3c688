"""Token-level losses: the operator is the curvature of the mean over all loss terms,
however the data is batched (``num_loss_terms``), against dense float64 oracles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curvsketch.operators import GGNOperator, HessianOperator, count_targets
from oracles import flat_params, oracle_ggn, oracle_hessian

VOCAB, T = 5, 6


class TinyCausalLM(nn.Module):
    """Embedding, a causal running mean (each position sees itself and the past), a head."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(VOCAB, 3)
        self.mix = nn.Linear(6, 4)
        self.head = nn.Linear(4, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.emb(ids)
        steps = torch.arange(1, ids.shape[1] + 1, dtype=e.dtype).view(1, -1, 1)
        past = e.cumsum(1) / steps
        return self.head(torch.tanh(self.mix(torch.cat([e, past], -1))))


class FlatLogits(nn.Module):
    """The LM with its (B, T, V) logits flattened to (B·T, V), for the GGN oracle."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.inner(ids).reshape(-1, VOCAB)


def token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=-100)


def token_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(
        logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )


def padded_sequences(lengths=(6, 2, 5, 0, 3, 6, 1, 4), seed: int = 0):
    """Token ids and next-token targets, padded at the end (targets -100 past the length).

    A length of 0 is a sequence with no target at all (its micro-batch has no loss term).
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (len(lengths), T), generator=g)
    targets = torch.randint(0, VOCAB, (len(lengths), T), generator=g)
    for i, n in enumerate(lengths):
        ids[i, n:] = 0
        targets[i, n:] = -100
    return ids, targets


def lm():
    return TinyCausalLM().double()


def batched(ids, targets, sizes):
    out, start = [], 0
    for n in sizes:
        out.append((ids[start : start + n], targets[start : start + n]))
        start += n
    assert start == ids.shape[0]
    return out


def rel(a, b):
    return float((a - b).norm() / b.norm())


BATCHINGS = [(8,), (2, 2, 2, 2), (4, 4), (1, 3, 4), (3, 5)]


@pytest.mark.parametrize("sizes", BATCHINGS)
@pytest.mark.parametrize("mbs", [None, 4, 2, 1])
def test_token_loss_hessian_does_not_depend_on_batching(sizes, mbs):
    """The README's invariance claim for a causal LM with padding (fails without
    num_loss_terms: micro-batches were weighted by their share of sequences)."""
    model = lm()
    ids, targets = padded_sequences()
    H = oracle_hessian(model, token_loss, ids, targets)  # mean over all 27 counted tokens
    V = torch.randn(H.shape[0], 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    op = HessianOperator(
        model,
        token_loss,
        batched(ids, targets, sizes),
        micro_batch_size=mbs,
        num_loss_terms=count_targets(-100),
        engine="graph",
    )
    assert op.samples.num_terms == int((targets != -100).sum())
    assert rel(op @ V, H @ V) < 1e-10


@pytest.mark.parametrize("engine", ["graph_batched", "vmap", "auto"])
def test_token_loss_every_hessian_engine(engine):
    model = lm()
    ids, targets = padded_sequences()
    H = oracle_hessian(model, token_loss, ids, targets)
    op = HessianOperator(
        model,
        token_loss,
        batched(ids, targets, (3, 5)),
        micro_batch_size=2,
        num_loss_terms=count_targets(),
        engine=engine,
    )
    V = torch.randn(H.shape[0], 5, dtype=torch.float64)
    assert rel(op @ V, H @ V) < 1e-10


@pytest.mark.parametrize("engine", ["graph", "vmap"])
def test_token_loss_ggn_does_not_depend_on_batching(engine):
    model = lm()
    ids, targets = padded_sequences()
    flat_t = targets.reshape(-1)
    G = oracle_ggn(
        FlatLogits(model), lambda z, t: F.cross_entropy(z, t, ignore_index=-100), ids, flat_t
    )
    V = torch.randn(G.shape[0], 3, dtype=torch.float64)
    for sizes, mbs in [((8,), None), ((1, 3, 4), 1), ((4, 4), 2)]:
        op = GGNOperator(
            model,
            token_loss,
            batched(ids, targets, sizes),
            micro_batch_size=mbs,
            num_loss_terms=count_targets(),
            engine=engine,
        )
        assert rel(op @ V, G @ V) < 1e-10


def test_sum_reduction_weights_by_one_over_total_terms():
    model = lm()
    ids, targets = padded_sequences()
    H = oracle_hessian(model, token_loss, ids, targets)
    V = torch.randn(H.shape[0], 3, dtype=torch.float64)
    op = HessianOperator(
        model,
        token_loss_sum,
        batched(ids, targets, (1, 3, 4)),
        micro_batch_size=2,
        reduction="sum",
        num_loss_terms=count_targets(),
    )
    assert rel(op @ V, H @ V) < 1e-10


def test_micro_batches_without_terms_are_skipped():
    model = lm()
    ids, targets = padded_sequences()
    op = HessianOperator(
        model, token_loss, (ids, targets), micro_batch_size=1, num_loss_terms=count_targets()
    )
    mbs = list(op.samples.iterate(torch.device("cpu"), torch.float64))
    assert len(mbs) == len(op.samples) == 7  # the sequence of length 0 holds no term
    assert [mb.start for mb in mbs] == [0, 1, 2, 4, 5, 6, 7]
    assert sum(mb.weight for mb in mbs) == pytest.approx(1.0, abs=1e-15)
    assert [mb.terms for mb in mbs] == [6, 2, 5, 3, 6, 1, 4]
    out = op @ torch.randn(op.shape[1], 2, dtype=torch.float64)
    assert torch.isfinite(out).all()


def test_default_stays_per_sample():
    """Without num_loss_terms, micro-batches weigh by samples, as before."""
    model = lm()
    ids, targets = padded_sequences()
    op = HessianOperator(model, token_loss, batched(ids, targets, (2, 6)))
    assert [mb.weight for mb in op.samples.iterate(torch.device("cpu"), torch.float64)] == [
        0.25,
        0.75,
    ]


def test_gradient_uses_the_same_weights():
    model = lm()
    ids, targets = padded_sequences()
    op = HessianOperator(
        model,
        token_loss,
        batched(ids, targets, (1, 3, 4)),
        micro_batch_size=2,
        num_loss_terms=count_targets(),
    )
    names = [n for n, _ in model.named_parameters()]

    def full_loss(*ps):
        return token_loss(
            torch.func.functional_call(model, dict(zip(names, ps, strict=True)), (ids,)), targets
        )

    expected = torch.cat(
        [
            g.reshape(-1)
            for g in torch.func.grad(full_loss, argnums=(0, 1, 2, 3, 4))(
                *[p.detach() for p in model.parameters()]
            )
        ]
    )
    assert rel(op.gradient(), expected) < 1e-12
    assert op.gradient().shape == flat_params(model.parameters()).shape


def test_count_targets_and_shift():
    t = torch.tensor([[1, 2, -100], [-100, -100, -100], [0, 3, 4]])
    assert count_targets()(None, t) == 5
    assert count_targets(ignore_index=0)(None, t) == 8
    assert count_targets(shift=1)(None, t) == 3
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        count_targets(1.5)
    with pytest.raises(ValueError, match="shift"):
        count_targets(shift=-1)
    with pytest.raises(TypeError, match="integer target"):
        count_targets()(None, t.double())
    with pytest.raises(TypeError, match="own num_loss_terms"):
        count_targets()(None, (t, t))


def test_bad_counters_name_the_batch():
    model = lm()
    ids, targets = padded_sequences()
    data = batched(ids, targets, (4, 4))
    with pytest.raises(TypeError, match=r"must return an int, got float .* batch 0"):
        HessianOperator(model, token_loss, data, num_loss_terms=lambda x, y: 2.0)
    with pytest.raises(ValueError, match=r"returned -1 < 0 at batch 0"):
        HessianOperator(model, token_loss, data, num_loss_terms=lambda x, y: -1)
    with pytest.raises(ValueError, match="0 loss terms"):
        HessianOperator(model, token_loss, data, num_loss_terms=lambda x, y: 0)
    with pytest.raises(TypeError, match="num_loss_terms must be a callable"):
        HessianOperator(model, token_loss, data, num_loss_terms=3)
    # a 0-d integer tensor is accepted
    op = HessianOperator(model, token_loss, data, num_loss_terms=lambda x, y: (y != -100).sum())
    assert op.samples.num_terms == int((targets != -100).sum())


def test_terms_that_change_between_passes_are_detected():
    model = lm()
    ids, targets = padded_sequences()

    class Drifting:
        calls = 0

        def __iter__(self):
            Drifting.calls += 1
            t = targets.clone()
            if Drifting.calls > 1:
                t[0, 0] = -100
            yield ids, t

    op = HessianOperator(model, token_loss, Drifting(), num_loss_terms=count_targets())
    with pytest.raises(RuntimeError, match="now holds 26 loss terms, it held 27"):
        op @ torch.randn(op.shape[1], dtype=torch.float64)
