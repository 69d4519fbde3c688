"""The sketch layer's imports: no circles, nothing upward, the CLI through experiments only.

The checker is ``benchmarks/import_graph.py`` (an :mod:`ast` walk over the sources, nothing
imported; the `checker` and `graph` fixtures of ``tests/conftest.py``).
"""

from __future__ import annotations


def test_no_circle_touches_the_sketch_layer(checker, graph):
    sketch = [c for c in checker.circles(graph) if any(".sketch" in m for m in c)]
    assert sketch == []


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
