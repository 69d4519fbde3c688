"""Import graph of ``curvsketch`` read from the source with :mod:`ast` (nothing is imported).

Prints the graph of ``src/curvsketch/sketch`` (module -> the package modules it imports),
then the import circles (strongly connected components of the graph of every module
under ``src/curvsketch``) and the imports that point up or skip a layer. Exit status 1
when there is a circle or a layer violation. Run::

    .venv/bin/python -m benchmarks.import_graph [--all]

Every ``import`` statement counts, also those inside functions (a lazy import still makes a
circle); the implicit import of a parent package (``curvsketch.sketch`` when
``curvsketch.sketch.noise`` is imported) does not. ``from P import name`` is an edge to the
module ``P.name`` when that file exists, else to ``P``.

Layers (``docs/architecture.md``; imports point down): ``cli`` > ``experiments`` > ``analysis`` >
``sketch`` > ``store`` > ``operators``. ``curvsketch/progress.py`` is a shared utility below
all of them (it imports nothing of the package); ``curvsketch/__init__.py`` and
``__main__.py`` are the public facade above all of them. Which lower layers each layer may
import is :data:`ALLOWED`: the CLI goes through ``experiments`` only; ``experiments`` is the
one place that composes the others; ``analysis`` sees tensors only; ``sketch`` sees an
operator protocol and the store; ``store`` fingerprints operators.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "curvsketch"
PACKAGE = "curvsketch"
ORDER = ("cli", "experiments", "analysis", "sketch", "store", "operators")
#: Lower layers each layer may import (besides itself and the shared utilities).
ALLOWED = {
    "facade": set(ORDER),
    "cli": {"experiments"},
    "experiments": {"analysis", "sketch", "store", "operators"},
    "analysis": set(),
    "sketch": {"store", "operators"},
    "store": {"operators"},
    "operators": set(),
    "shared": set(),
}
SHARED = {"curvsketch.progress"}


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _targets(node: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return {n for n in names if n.split(".")[0] == PACKAGE}
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    if source.split(".")[0] != PACKAGE:
        return set()
    out = set()
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        out.add(sub if sub in known else source)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every module under ``root``."""
    files = module_files(root)
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _targets(node, module, is_package, known)
        graph[module] = {e for e in edges if e != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def layer(module: str) -> str:
    """The layer of a module: one of :data:`ORDER`, ``"shared"`` or ``"facade"``."""
    if module in SHARED:
        return "shared"
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "facade"
    return parts[1] if parts[1] in ORDER else "shared"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b: upward"`` or ``"a -> b: skips ..."`` for every import against the layers."""
    problems = []
    for a in sorted(graph):
        for b in sorted(graph[a]):
            la, lb = layer(a), layer(b)
            if la == lb or lb == "shared":
                continue
            if lb == "facade" or (la != "facade" and ORDER.index(lb) < ORDER.index(la)):
                problems.append(f"{a} -> {b}: upward ({la} imports {lb})")
            elif lb not in ALLOWED[la]:
                problems.append(
                    f"{a} -> {b}: skips a layer ({la} may import "
                    f"{', '.join(sorted(ALLOWED[la])) or 'nothing below'})"
                )
    return problems


def _short(module: str, prefix: str) -> str:
    return module[len(prefix) + 1 :] if module.startswith(prefix + ".") else module


def report(graph: dict[str, set[str]], prefix: str = "curvsketch.sketch") -> str:
    """The graph of the modules under ``prefix``, its circles and the layer violations."""
    lines = [f"import graph of {prefix} (module -> modules of {prefix} it imports):"]
    inside = sorted(m for m in graph if m == prefix or m.startswith(prefix + "."))
    for m in inside:
        deps = sorted(_short(d, prefix) for d in graph[m] if d in inside)
        lines.append(f"  {_short(m, prefix) or '__init__'} -> {', '.join(deps) or '-'}")
    found = circles(graph)
    lines.append(f"circles in {PACKAGE}: {len(found)}")
    lines += [f"  {' <-> '.join(c)}" for c in found]
    problems = layer_violations(graph)
    lines.append(f"upward or layer-skipping imports in {PACKAGE}: {len(problems)}")
    lines += [f"  {p}" for p in problems]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    graph = import_graph()
    print(report(graph, PACKAGE if "--all" in argv else "curvsketch.sketch"))
    return 1 if circles(graph) or layer_violations(graph) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
