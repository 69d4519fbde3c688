"""The sketch layer's imports: no circles, nothing upward, the CLI through experiments only.

The checker is ``benchmarks/import_graph.py`` (an :mod:`ast` walk over the sources, nothing
imported), loaded here by its path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "import_graph.py"


@pytest.fixture(scope="module")
def checker():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def graph(checker):
    return checker.import_graph()


def test_no_circle_touches_the_sketch_layer(checker, graph):
    sketch = [c for c in checker.circles(graph) if any(".sketch" in m for m in c)]
    assert sketch == []


def test_sketch_imports_point_down_and_the_cli_reaches_it_through_experiments(checker, graph):
    owned = ("curvsketch.sketch", "curvsketch.cli.distributed", "curvsketch.experiments")
    problems = [p for p in checker.layer_violations(graph) if p.startswith(owned)]
    assert problems == []
    assert not any(m.startswith("curvsketch.sketch") for m in graph["curvsketch.cli.distributed"])


def test_the_checker_finds_circles_and_upward_imports(checker):
    graph = {
        "curvsketch.sketch.a": {"curvsketch.sketch.b"},
        "curvsketch.sketch.b": {"curvsketch.sketch.a", "curvsketch.experiments.x"},
        "curvsketch.experiments.x": set(),
        "curvsketch.cli.c": {"curvsketch.sketch.a"},
    }
    assert checker.circles(graph) == [["curvsketch.sketch.a", "curvsketch.sketch.b"]]
    problems = checker.layer_violations(graph)
    assert any("sketch.b -> curvsketch.experiments.x: upward" in p for p in problems)
    assert any("cli.c -> curvsketch.sketch.a: skips a layer" in p for p in problems)


def test_the_graph_sees_lazy_and_relative_imports(checker, tmp_path):
    pkg = tmp_path / "curvsketch"
    (pkg / "sketch").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sketch" / "__init__.py").write_text("from .a import f\n")
    (pkg / "sketch" / "a.py").write_text("def f():\n    from curvsketch.sketch import b\n")
    (pkg / "sketch" / "b.py").write_text("from . import a\n")
    graph = checker.import_graph(pkg)
    assert graph["curvsketch.sketch.a"] == {"curvsketch.sketch.b"}
    assert graph["curvsketch.sketch.b"] == {"curvsketch.sketch.a"}
    assert graph["curvsketch.sketch"] == {"curvsketch.sketch.a"}
