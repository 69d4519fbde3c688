"""Tests of curvsketch.experiments.models: exact parameter counts, shapes, TF padding."""

import pytest
import torch
from torch import nn

from curvsketch.experiments.models import (
    MODELS,
    PAPER_PARAMETER_COUNTS,
    SameConv2d,
    SameMaxPool2d,
    all_cnn_c,
    build_model,
    count_parameters,
    deepobs_3c3d,
    mlp,
    paper_mlp,
    resnet18,
    scaled_mlp,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small forward passes run faster single-threaded on a loaded 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize(
    ("name", "count", "input_shape", "output_shape"),
    [
        ("paper_mlp", 7_030, (2, 256), (2, 10)),
        ("deepobs_3c3d", 895_210, (2, 3, 32, 32), (2, 10)),
        ("all_cnn_c", 1_387_108, (2, 3, 32, 32), (2, 100)),
        ("resnet18", 11_689_512, (1, 3, 64, 64), (1, 1000)),
    ],
)
def test_paper_models_exact_counts_and_shapes(name, count, input_shape, output_shape):
    model = build_model(name, seed=0).eval()
    assert count_parameters(model) == count == PAPER_PARAMETER_COUNTS[name]
    with torch.no_grad():
        assert model(torch.randn(input_shape)).shape == output_shape


def test_mlp_family():
    assert [m.out_features for m in paper_mlp() if isinstance(m, nn.Linear)] == [20] * 5 + [10]
    assert all(
        isinstance(m, nn.Tanh) for m in paper_mlp() if not isinstance(m, nn.Linear | nn.Flatten)
    )
    for width, depth in [(5, 1), (40, 3), (100, 5)]:
        expected = 256 * width + width + (depth - 1) * (width * width + width) + width * 10 + 10
        assert count_parameters(scaled_mlp(width, depth)) == expected
    model = mlp([8, 4, 3], "relu")
    assert count_parameters(model) == 8 * 4 + 4 + 4 * 3 + 3 and isinstance(model[2], nn.ReLU)
    assert model(torch.randn(5, 2, 4)).shape == (5, 3)  # inputs are flattened
    assert isinstance(mlp([2, 2, 2], nn.ELU)[2], nn.ELU)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        mlp([2, 2], "swish")
    with pytest.raises(ValueError, match="sizes must hold"):
        mlp([5])


def test_seed_makes_init_reproducible_without_touching_global_rng():
    state = torch.get_rng_state()
    a, b = paper_mlp(seed=3), paper_mlp(seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = paper_mlp(seed=4)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_registry():
    assert set(MODELS) >= set(PAPER_PARAMETER_COUNTS)
    assert count_parameters(build_model("scaled-mlp", width=30)) == count_parameters(scaled_mlp(30))
    with pytest.raises(ValueError, match=r"unknown model name 'vgg16'; known names: paper_mlp"):
        build_model("vgg16")


def test_count_parameters_trainable_only():
    model = paper_mlp()
    model[1].weight.requires_grad_(False)
    assert count_parameters(model) == 7030 - 256 * 20
    assert count_parameters(model, trainable_only=False) == 7030


@pytest.mark.parametrize("size", [5, 6, 7, 8, 32])
def test_same_padding_matches_tensorflow(size):
    conv = SameConv2d(1, 1, 3, 2, bias=False)
    x = torch.randn(1, 1, size, size)
    out = conv(x)
    assert out.shape[-1] == -(-size // 2)
    total = max((out.shape[-1] - 1) * 2 + 3 - size, 0)  # TF: extra padding goes after
    padded = torch.nn.functional.pad(x, (total // 2, total - total // 2) * 2)
    torch.testing.assert_close(out, torch.nn.functional.conv2d(padded, conv.weight, stride=2))
    pooled = SameMaxPool2d(3, 2)(-torch.ones(1, 1, size, size))
    assert pooled.shape[-1] == -(-size // 2) and torch.all(pooled == -1)  # padding never wins


def test_deepobs_layouts_and_init():
    net = deepobs_3c3d(seed=0)
    assert net[:10](torch.zeros(1, 3, 32, 32)).shape == (1, 3 * 3 * 128)
    assert all(
        float(m.bias.detach().abs().max()) == 0 for m in net if isinstance(m, nn.Conv2d | nn.Linear)
    )
    allcnn = all_cnn_c(seed=0)
    assert all(torch.all(m.bias == 0.1) for m in allcnn if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, SameConv2d) for m in allcnn) == 2  # the two stride-2 convs
    x = torch.randn(2, 3, 32, 32)
    allcnn.eval()
    with torch.no_grad():
        torch.testing.assert_close(allcnn(x), allcnn(x))  # dropout is off in eval mode
    assert [n for n, _ in allcnn.named_children()][:3] == ["dropout1", "conv1", "relu1"]


def test_resnet18_torchvision_layout():
    keys = list(resnet18(num_classes=7, seed=0).state_dict())
    assert len(keys) == 122
    expected = ["conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight"]
    expected += ["layer2.0.downsample.1.bias", "layer4.1.bn2.num_batches_tracked", "fc.bias"]
    assert set(expected) <= set(keys)
    assert "layer1.0.downsample.0.weight" not in keys
    assert count_parameters(resnet18(num_classes=7)) == 11_689_512 - 993 * 512 - 993


def test_builders_refuse_bad_arguments_by_name():
    from curvsketch.experiments.models import model_arguments

    with pytest.raises(ValueError, match=r"model 'mlp': .*'foo'; its arguments: sizes, activation"):
        build_model("mlp", sizes=[4, 2], foo=1)
    with pytest.raises(ValueError, match=r"model 'scaled_mlp': .*'width'"):
        build_model("scaled_mlp")
    for kwargs, words in (
        ({"width": 2.5}, r"width must be an integer >= 1, got 2\.5"),  # was silently width 2
        ({"width": True}, r"width must be an integer >= 1, got True"),
        ({"width": 3, "depth": 0}, r"depth \(hidden layers\) must be an integer >= 1, got 0"),
        ({"width": 3, "activation": 3}, r"activation must be a name"),
        ({"width": 3, "activation": nn.ReLU()}, r"zero-argument module factory"),
        ({"width": 3, "seed": "x"}, r"seed must be an integer or None"),
    ):
        with pytest.raises(ValueError, match=words):
            build_model("scaled_mlp", **kwargs)
    with pytest.raises(ValueError, match=r"sizes must hold .*got \[4, 2\.5\]"):
        mlp([4, 2.5])  # was silently a width of 2
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 1, got 0"):
        deepobs_3c3d(0)
    assert model_arguments("scaled_mlp", required=True) == ["width"]
    assert count_parameters(mlp((4, torch.tensor(2).item(), 3))) == 4 * 2 + 2 + 2 * 3 + 3
