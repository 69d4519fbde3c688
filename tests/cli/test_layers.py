"""The whole package's imports: no circles, every import points down the layers.

The checker is ``benchmarks/import_graph.py`` (an :mod:`ast` walk over the sources, nothing
imported; the `checker` and `graph` fixtures of ``tests/conftest.py``). Layers
(``docs/architecture.md``): cli -> experiments -> analysis -> sketch -> store -> operators; the
CLI goes through ``experiments`` only.
"""

from __future__ import annotations


def test_the_package_has_no_import_circle(checker, graph):
    found = checker.circles(graph)
    assert found == [], "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_every_import_points_down_the_layers(checker, graph):
    problems = checker.layer_violations(graph)
    assert problems == [], "layer violations:\n" + "\n".join(problems)


def test_the_cli_imports_experiments_and_itself_only(graph):
    for module in (m for m in graph if m.startswith("curvsketch.cli")):
        allowed = ("curvsketch.cli", "curvsketch.experiments", "curvsketch.progress")
        outside = {d for d in graph[module] if not d.startswith(allowed)}
        assert outside == set(), f"{module} imports {sorted(outside)}"


def test_the_config_modules_import_one_way(graph):
    """config -> config_rules -> config_sections, never back (the old circle)."""
    config = "curvsketch.experiments.config"
    rules = f"{config}_rules"
    sections = f"{config}_sections"
    assert rules in graph[config] and sections in graph[config]
    assert sections in graph[rules] and config not in graph[rules]
    assert not {d for d in graph[sections] if d.startswith("curvsketch")}


def test_the_checker_sees_a_cli_that_skips_experiments(checker):
    graph = {
        "curvsketch.cli.main": {"curvsketch.analysis", "curvsketch"},
        "curvsketch.analysis": set(),
        "curvsketch": set(),
    }
    problems = checker.layer_violations(graph)
    assert any("cli.main -> curvsketch.analysis: skips a layer" in p for p in problems)
    assert any("cli.main -> curvsketch: upward" in p for p in problems)


def test_the_version_the_cli_prints_is_the_package_version():
    import curvsketch
    from curvsketch.experiments.entry import package_version

    assert package_version() == curvsketch.__version__
