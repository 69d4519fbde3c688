"""Every Python block of the README runs as written.

All ``python`` blocks run top to bottom in one namespace, as a reader pasting them into one
session would (in a scratch working directory: some write files); a block marked
``<!-- tested snippet -->`` must also run alone, in a fresh namespace, and print its result.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "<!-- tested snippet -->"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _snippets() -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(re.escape(MARK) + r"\s*```python\n(.*?)```", text, flags=re.S)


def test_the_readme_has_tested_snippets():
    assert len(_snippets()) >= 3
    assert len(_blocks()) > len(_snippets())


def test_every_readme_block_runs_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for index, code in enumerate(_blocks()):
        first = code.strip().splitlines()[0]
        try:
            exec(compile(code, f"README.md python block {index}", "exec"), namespace)
        except Exception as err:  # pragma: no cover - the message is the point
            raise AssertionError(
                f"README python block {index} ({first!r}) failed: {err!r}"
            ) from err
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("index", range(len(_snippets())))
def test_readme_snippet_runs(index, capsys):
    code = _snippets()[index]
    exec(compile(code, f"README.md snippet {index}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.strip()  # every snippet prints its result
