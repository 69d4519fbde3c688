"""The README's marked snippets run as written (each in a fresh namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "<!-- tested snippet -->"


def _snippets() -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(re.escape(MARK) + r"\s*```python\n(.*?)```", text, flags=re.S)


def test_the_readme_has_tested_snippets():
    assert len(_snippets()) >= 3


@pytest.mark.parametrize("index", range(len(_snippets())))
def test_readme_snippet_runs(index, capsys):
    code = _snippets()[index]
    exec(compile(code, f"README.md snippet {index}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.strip()  # every snippet prints its result
