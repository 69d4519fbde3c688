"""Fixtures shared by several test folders."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

IMPORT_GRAPH = Path(__file__).resolve().parents[1] / "benchmarks" / "import_graph.py"


@pytest.fixture(scope="session")
def checker():
    """``benchmarks/import_graph.py`` loaded by path (the import-graph checker)."""
    spec = importlib.util.spec_from_file_location("import_graph", IMPORT_GRAPH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def graph(checker):
    """The import graph of the installed source tree ``src/curvsketch``."""
    return checker.import_graph()
