"""The progress reporter (curvsketch.progress)."""

from __future__ import annotations

import io

import pytest

from curvsketch.progress import Progress, format_duration


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_log_mode_writes_lines_and_a_final_line():
    out = io.StringIO()
    with Progress(10, "HVPs", stream=out, log_interval=0.0) as p:
        p.update(3)
        p.update(7)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("HVPs: 3/10 (30%)")
    assert lines[-1].startswith("HVPs: 10/10 (100%)")
    assert "ETA" in lines[0] and "it/s" in lines[0]
    assert "\r" not in out.getvalue()


def test_log_mode_is_rate_limited():
    out = io.StringIO()
    with Progress(100, stream=out, log_interval=3600) as p:
        for _ in range(100):
            p.update()
    assert len(out.getvalue().splitlines()) == 2  # the first update and the final line


def test_tty_mode_redraws_in_place():
    out = FakeTTY()
    with Progress(4, "x", stream=out, min_interval=0.0, unit="products") as p:
        p.update(2)
        p.update(2)
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    assert "products/s" in text


def test_disabled_writes_nothing(capsys):
    with Progress(5, enabled=False) as p:
        p.update(5)
    assert capsys.readouterr().err == ""
    with Progress(2, "to stderr", log_interval=0.0) as p:
        p.update(2)
    assert "to stderr: 2/2" in capsys.readouterr().err


def test_close_is_idempotent_and_zero_total_is_fine():
    out = io.StringIO()
    p = Progress(0, stream=out)
    p.close()
    p.close()
    p.update(1)  # after close: ignored
    assert out.getvalue().count("\n") == 1
    assert "0/0 (100%)" in out.getvalue()
    with pytest.raises(ValueError, match="total must be >= 0"):
        Progress(-1)


def test_format_duration():
    assert format_duration(0) == "0:00:00"
    assert format_duration(3725.4) == "1:02:05"
    assert format_duration(float("nan")) == "?"
    assert format_duration(float("inf")) == "?"


def test_resumed_loop_counts_initial_items_but_not_in_the_rate():
    out = io.StringIO()
    p = Progress(100, "train", stream=out, log_interval=0.0, unit="steps", initial=90)
    p._start -= 10.0  # ten seconds have passed
    p.postfix = "loss 0.1234"
    p.update(10)
    line = out.getvalue().splitlines()[-1]
    assert line.startswith("train: 100/100 (100%)")
    rate = float(line.split()[3])
    assert rate == pytest.approx(1.0, rel=0.05)  # 10 new steps in ~10 s, not 100
    assert line.endswith("loss 0.1234")


def test_initial_outside_total_is_refused():
    with pytest.raises(ValueError, match="initial"):
        Progress(5, initial=6)
