"""Forms of ``data``: pairs with tuple / dict inputs, Hugging-Face-style dict batches, and
the errors for forms that cannot be read."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from curvsketch.operators import (
    GGNOperator,
    HessianOperator,
    count_targets,
    dict_batches,
)
from curvsketch.operators.batches import is_pair
from oracles import classification_data, flat_params, tanh_mlp

DT = torch.float64


class TwoInputs(nn.Module):
    """forward(a, b): two feature groups."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(4, 5)
        self.b = nn.Linear(2, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, a, b):
        return self.head(torch.tanh(self.a(a) + self.b(b)))


def two_input_data(n=20):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, 4, generator=g, dtype=DT)
    b = torch.randn(n, 2, generator=g, dtype=DT)
    return a, b, torch.randint(0, 3, (n,), generator=g)


def hessian_oracle(model, loss_fn, args, kwargs, y):
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())

    def f(theta):
        ps, o = {}, 0
        for n, p in zip(names, params, strict=True):
            ps[n] = theta[o : o + p.numel()].view_as(p)
            o += p.numel()
        return loss_fn(torch.func.functional_call(model, ps, args, kwargs), y)

    return torch.func.hessian(f)(flat_params(params))


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("engine", ["graph", "vmap"])
def test_dict_inputs_as_one_pair_are_keyword_arguments(engine):
    model = TwoInputs().double()
    a, b, y = two_input_data()
    H = hessian_oracle(model, F.cross_entropy, (), {"a": a, "b": b}, y)
    V = torch.randn(H.shape[0], 3, dtype=DT)
    op = HessianOperator(model, F.cross_entropy, ({"b": b, "a": a}, y), engine=engine)
    assert op.samples.sizes == [20]
    assert rel(op @ V, H @ V) < 1e-12
    mb = HessianOperator(model, F.cross_entropy, ({"a": a, "b": b}, y), micro_batch_size=3)
    assert rel(mb @ V, H @ V) < 1e-12


@pytest.mark.parametrize("engine", ["graph", "vmap"])
def test_tuple_inputs_as_one_pair_are_positional(engine):
    model = TwoInputs().double()
    a, b, y = two_input_data()
    H = hessian_oracle(model, F.cross_entropy, (a, b), {}, y)
    V = torch.randn(H.shape[0], 3, dtype=DT)
    op = HessianOperator(model, F.cross_entropy, ((a, b), y), engine=engine, micro_batch_size=7)
    assert op.samples.sizes == [20]
    assert rel(op @ V, H @ V) < 1e-12
    G = GGNOperator(model, F.cross_entropy, ((a, b), y), engine=engine)
    assert G.samples.sizes == [20]


class PairDataset(Dataset):
    def __init__(self, a, b, y):
        self.a, self.b, self.y = a, b, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return (self.a[i], self.b[i]), self.y[i]


def test_dataloader_of_tuple_inputs_lists_are_positional_too():
    """A DataLoader collates ((a, b), y) samples into [[A, B], Y]: lists unpack like tuples."""
    model = TwoInputs().double()
    a, b, y = two_input_data()
    H = hessian_oracle(model, F.cross_entropy, (a, b), {}, y)
    V = torch.randn(H.shape[0], 2, dtype=DT)
    loader = DataLoader(PairDataset(a, b, y), batch_size=6)
    op = HessianOperator(model, F.cross_entropy, loader)
    assert op.samples.sizes == [6, 6, 6, 2]
    assert rel(op @ V, H @ V) < 1e-12


def test_pair_or_batches_reading():
    X, y = classification_data()
    assert is_pair((X, y))
    assert is_pair(((X, X), y))
    assert is_pair(({"x": X}, y))
    assert is_pair((X, (y, y)))  # tuple targets
    assert not is_pair([(X, y), (X, y)])
    assert not is_pair(((X, y), (X, y)))  # two batches
    assert not is_pair([X, y])  # a list is always a sequence of batches


@dataclass
class Output:
    logits: torch.Tensor


class TinyHFLM(nn.Module):
    """Hugging-Face-like: forward(input_ids, attention_mask) -> object with .logits."""

    def __init__(self, vocab=5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.vocab = vocab
        self.emb = nn.Embedding(vocab, 3)
        self.head = nn.Linear(6, vocab)

    def forward(self, input_ids, attention_mask):
        e = self.emb(input_ids) * attention_mask.unsqueeze(-1).to(self.head.weight.dtype)
        past = e.cumsum(1)
        return Output(self.head(torch.tanh(torch.cat([e, past], -1))))


def hf_loss(out, labels):
    logits = out.logits[:, :-1]
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def hf_batches(lengths=(5, 3, 4, 2, 5, 1), t=5, sizes=(2, 4)):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 5, (len(lengths), t), generator=g)
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    labels = ids.masked_fill(mask == 0, -100)
    out, s = [], 0
    for n in sizes:
        sl = slice(s, s + n)
        out.append({"input_ids": ids[sl], "attention_mask": mask[sl], "labels": labels[sl]})
        s += n
    return out, ids, mask, labels


def test_hugging_face_style_batches_with_the_adapter():
    model = TinyHFLM().double()
    batches, ids, mask, labels = hf_batches()
    data = dict_batches(batches)
    assert [type(x) for x, _ in data] == [dict, dict]  # re-iterable: read twice
    assert list(next(iter(data))[0]) == ["input_ids", "attention_mask"]
    H = hessian_oracle(model, hf_loss, (), {"input_ids": ids, "attention_mask": mask}, labels)
    V = torch.randn(H.shape[0], 3, dtype=DT)
    op = HessianOperator(
        model, hf_loss, data, micro_batch_size=1, num_loss_terms=count_targets(shift=1)
    )
    assert op.samples.num_terms == int((labels[:, 1:] != -100).sum())
    assert rel(op @ V, H @ V) < 1e-12
    # a DataLoader over dict samples collates into dict batches; the adapter keeps it re-iterable
    samples = [{k: v[i] for k, v in batches[0].items()} for i in range(2)] + [
        {k: v[i] for k, v in batches[1].items()} for i in range(4)
    ]
    loader = DataLoader(samples, batch_size=4)
    op2 = HessianOperator(
        model, hf_loss, dict_batches(loader), num_loss_terms=count_targets(shift=1)
    )
    assert rel(op2 @ V, H @ V) < 1e-12


def test_dict_batch_errors_point_to_the_adapter():
    batches, *_ = hf_batches()
    model = TinyHFLM().double()
    with pytest.raises(TypeError, match=r"got a dict .*dict_batches\(data, target_key='labels'\)"):
        HessianOperator(model, hf_loss, batches[0])
    with pytest.raises(ValueError, match=r"batch 0 is a dict .*dict_batches"):
        HessianOperator(model, hf_loss, batches)
    with pytest.raises(ValueError, match="no key 'label'"):
        HessianOperator(model, hf_loss, dict_batches(batches, target_key="label"))
    with pytest.raises(TypeError, match="one-shot iterator"):
        dict_batches(iter(batches))
    with pytest.raises(ValueError, match="also in input_keys"):
        dict_batches(batches, input_keys=["input_ids", "labels"])
    only_ids = dict_batches(batches, input_keys=["input_ids"])
    assert list(next(iter(only_ids))[0]) == ["input_ids"]


def test_misread_forms_say_how_data_was_read():
    X, y = classification_data()
    model = tanh_mlp()
    with pytest.raises(ValueError, match=r"read as a sequence .* give a tuple \(inputs, targets\)"):
        HessianOperator(model, F.cross_entropy, [X, y])
    with pytest.raises(ValueError, match=r"read as 2 batches.*\[\(inputs, targets\)\]"):
        HessianOperator(model, F.cross_entropy, ((X, X, X), (y, y, y)))


def test_inconsistent_sample_counts_in_dict_inputs_are_named():
    a, b, y = two_input_data()
    with pytest.raises(ValueError, match=r"inputs\['a'\] has 20, batch 0 inputs\['b'\] has 19"):
        HessianOperator(TwoInputs().double(), F.cross_entropy, ({"a": a, "b": b[:19]}, y))


@pytest.mark.parametrize("engine", ["auto", "graph", "vmap"])
def test_integer_inputs_to_a_float_model_name_the_data(engine):
    X, y = classification_data()
    op = HessianOperator(tanh_mlp(), F.cross_entropy, (X.long(), y), engine=engine)
    with pytest.raises(TypeError, match=r"data: the model failed on the integer inputs .*X\.to\("):
        op @ torch.randn(op.shape[1], dtype=DT)
    with pytest.raises(TypeError, match="integer inputs"):
        op.gradient()


def test_floating_token_ids_to_an_embedding_name_the_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(5, 3), nn.Flatten(), nn.Linear(6, 2)).double()
    ids, y = torch.randint(0, 5, (4, 2)), torch.randint(0, 2, (4,))
    op = HessianOperator(model, F.cross_entropy, (ids.double(), y))
    with pytest.raises(TypeError, match=r"takes integer indices .* ids\.long\(\)"):
        op @ torch.randn(op.shape[1], dtype=DT)
    ok = HessianOperator(model, F.cross_entropy, (ids, y))  # integer ids pass unchanged
    assert torch.isfinite(ok @ torch.randn(ok.shape[1], dtype=DT)).all()
