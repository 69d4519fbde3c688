"""Checkpoint files of a training run: both formats, claimed steps, setting comparisons."""

from __future__ import annotations

import pytest
import torch

from curvsketch.experiments.checkpoints import (
    describe_changes,
    load_checkpoint,
    setting_changes,
)


def test_load_checkpoint_reads_both_formats(tmp_path):
    state = {"0.weight": torch.randn(3, 2), "0.bias": torch.randn(3)}
    torch.save({"step": 7, "model": state, "run": "abc"}, tmp_path / "run.pt")
    torch.save(state, tmp_path / "plain.pt")
    for name in ("run.pt", "plain.pt"):
        loaded = load_checkpoint(tmp_path / name)
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert load_checkpoint(tmp_path / "run.pt", step=7).keys() == state.keys()
    with pytest.raises(ValueError, match=r"claims step 7, not step 8; .*delete it and rerun"):
        load_checkpoint(tmp_path / "run.pt", step=8)


def test_load_checkpoint_errors_name_the_file(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"bad\.pt is unreadable"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt holds no state dict"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="it is a folder: pass one of its step_"):
        load_checkpoint(tmp_path)


def test_setting_changes_compares_the_probe_to_rounding_only():
    saved = {"lr": 0.1, "probe_loss": 2.302585}
    assert setting_changes(saved, {"lr": 0.1, "probe_loss": 2.302585 * (1 + 1e-6)}) == {}
    changes = setting_changes(saved, {"lr": 0.1, "probe_loss": 2.31, "model.seed": 1})
    assert changes == {"probe_loss": (2.302585, 2.31), "model.seed": (None, 1)}
    assert "not recorded by the curvsketch that wrote it" in describe_changes(changes)
