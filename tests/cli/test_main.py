"""The curvsketch command: help, and errors that name the fix (exit status 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from curvsketch.cli.main import main


def run(tmp_path, text, *extra):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    return main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", *extra])


def test_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("demo", "run", "metrics-study", "results.json", "configs/"):
        assert word in text


def test_missing_data_folder(tmp_path, capsys):
    code = run(tmp_path, '[data]\nname = "cifar10"\n', "--data-root", str(tmp_path / "nowhere"))
    assert code == 2
    err = capsys.readouterr().err
    assert "curvsketch: error:" in err and "cifar-10-batches-py" in err


def test_folder_dataset_without_root(tmp_path, capsys):
    assert run(tmp_path, '[data]\nname = "mnist"\n') == 2
    assert "--data-root" in capsys.readouterr().err


def test_bad_config_key(tmp_path, capsys):
    assert run(tmp_path, "[sketch]\nouter = 10\ninnner = 20\n") == 2
    assert "did you mean 'inner'" in capsys.readouterr().err


def test_unknown_model_name(tmp_path, capsys):
    assert (
        run(tmp_path, '[model]\nname = "vgg16"\n[train]\nsteps = 1\n[hessian]\nsteps = [0]\n') == 2
    )
    err = capsys.readouterr().err
    assert "unknown model name 'vgg16'" in err and "paper_mlp" in err


def test_metrics_study_writes_a_figure(tmp_path):
    assert (
        main(["metrics-study", "--out", str(tmp_path), "--dims", "16", "32", "--samples", "3"]) == 0
    )
    assert (tmp_path / "metrics_study.png").stat().st_size > 5_000


def test_python_dash_m_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "curvsketch", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("curvsketch ")
