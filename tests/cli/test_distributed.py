"""``curvsketch measure`` / ``recover``: checkpoints of ``run``, bad files, a full disk."""

from __future__ import annotations

import errno

import pytest
import torch

from curvsketch.cli.distributed import build_operator
from curvsketch.cli.main import main
from curvsketch.experiments.config import load_config
from curvsketch.experiments.pipeline import run_study

MINI_TOML = """
name = "mini"
[data]
name = "digits"
n_test_per_class = 5
hessian_per_class = 2
[model]
name = "mlp"
kwargs = {{sizes = [64, 3, 10]{activation}}}
[train]
steps = 4
lr = 0.1
batch_size = 32
[hessian]
steps = [0, 4]
splits = ["test"]
exact = "false"
engine = "graph"
[sketch]
outer = 8
inner = 16
error_tests = 2
[analysis]
ks = [2, 4]
main_k = 4
rhos = [0.01]
stability_ks = [2]
random_draws = 2
scores = ["magnitude"]
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished ``run`` of the mini study, and its TOML (tanh) plus a relu variant."""
    root = tmp_path_factory.mktemp("distributed")
    config = root / "mini.toml"
    config.write_text(MINI_TOML.format(activation=""))
    relu = root / "relu.toml"
    relu.write_text(MINI_TOML.format(activation=', activation = "relu"'))
    run_study(load_config(config), root / "out", progress=False, figures=False)
    return root, config, relu, root / "out" / "checkpoints" / "step_00000004.pt"


def test_measure_reads_the_checkpoints_that_run_writes(trained, tmp_path):
    """It failed on the keys ``step`` and ``model`` (issue 14, item 5)."""
    _, config, _, checkpoint = trained
    argv = ["measure", str(config), "--store", str(tmp_path / "st"), "--quiet"]
    assert main([*argv, "--checkpoint", str(checkpoint), "--split", "test"]) == 0
    # the same operator as from a plain state dict of the same weights
    plain = tmp_path / "plain.pt"
    torch.save(torch.load(checkpoint, weights_only=True)["model"], plain)
    cfg = load_config(config)
    V = torch.randn(235, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    from_run = build_operator(cfg, "test", str(checkpoint)) @ V
    torch.testing.assert_close(from_run, build_operator(cfg, "test", str(plain)) @ V)
    untrained = build_operator(cfg, "test") @ V
    assert not torch.allclose(from_run, untrained)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("curvsketch: error: "), err
    return err[0]


def test_measure_refuses_a_checkpoint_of_another_model(trained, tmp_path, capsys):
    _, _, relu, checkpoint = trained
    argv = ["measure", str(relu), "--store", str(tmp_path / "st"), "--quiet"]
    assert main([*argv, "--checkpoint", str(checkpoint)]) == 2
    line = _one_error_line(capsys)
    assert "model.kwargs: saved {'sizes': [64, 3, 10]}" in line and "configuration it was" in line


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"garbage", "is unreadable"),
        (None, "does not fit the model"),  # a state dict of another architecture
    ],
)
def test_measure_with_a_bad_checkpoint_file(trained, tmp_path, capsys, content, says):
    _, config, _, _ = trained
    bad = tmp_path / "bad.pt"
    if content is None:
        torch.save({"0.weight": torch.zeros(2, 2)}, bad)
    else:
        bad.write_bytes(content)
    argv = ["measure", str(config), "--store", str(tmp_path / "st"), "--quiet"]
    assert main([*argv, "--checkpoint", str(bad)]) == 2
    line = _one_error_line(capsys)
    assert str(bad) in line and says in line


def test_recover_on_a_full_disk_says_so(trained, tmp_path, capsys, monkeypatch):
    _, config, _, _ = trained
    store = tmp_path / "st"
    assert main(["measure", str(config), "--store", str(store), "--quiet"]) == 0
    capsys.readouterr()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    assert main(["recover", "--store", str(store), "--out", str(tmp_path / "eig.pt")]) == 2
    line = _one_error_line(capsys)
    assert "eig.pt: the disk is full" in line and "rerun recover" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st"]  # no partial file
