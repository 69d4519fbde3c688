"""Output folders, atomic writes that fail clearly, digests and corrupt JSON (run_files)."""

from __future__ import annotations

import errno

import pytest
import torch

from curvsketch.experiments.run_files import (
    OutputError,
    atomic_write,
    digest,
    prepare_dir,
    read_json,
)


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")

    def write(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=r"results\.json: the disk is full .*; free space or x"):
        atomic_write(path, write, "x")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "results.json"
    ]
    assert issubclass(OutputError, ValueError)  # the CLI prints it as one line


def test_prepare_dir_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder; use another"):
        prepare_dir(tmp_path / "f", "use another")
    with pytest.raises(OutputError, match="a file stands where a folder is needed"):
        prepare_dir(tmp_path / "f" / "sub", "use another")
    assert prepare_dir(tmp_path / "a" / "b").is_dir()


def test_digest_sees_values_dtypes_shapes_and_names():
    a = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}
    assert digest(a) == digest({"b": torch.zeros(3), "w": torch.arange(6.0).reshape(2, 3)})
    changed = [
        {**a, "w": a["w"] + 1e-7},
        {**a, "w": a["w"].double()},
        {**a, "w": a["w"].reshape(3, 2)},
        {"v": a["w"], "b": a["b"]},
    ]
    assert len({digest(a), *(digest(c) for c in changed)}) == 5
    assert digest([torch.ones(2)]) != digest([torch.ones(2), torch.ones(0)])


@pytest.mark.parametrize("garbage", ["", "{", "\x00\x01", '{"a": 1'])
def test_read_json_treats_a_corrupt_file_as_missing(tmp_path, capsys, garbage):
    path = tmp_path / "x.json"
    path.write_text(garbage)
    assert read_json(path, "recomputing it") is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x.json is unreadable" in err and "recomputing it" in err
    assert read_json(tmp_path / "absent.json") is None
    path.write_text('{"a": [1, 2]}')
    assert read_json(path) == {"a": [1, 2]}
