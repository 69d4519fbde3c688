"""The ``>>>`` examples in the docstrings of the main entry points run and print what they show.

Each object named in :data:`DOCUMENTED` must carry at least one example; all of them run
with :mod:`doctest` (``ELLIPSIS`` and ``NORMALIZE_WHITESPACE`` on), each in a fresh
namespace, and a failure shows doctest's own report. To cover another entry point, add its
``"module:qualified.name"`` to the list.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

#: The entry points whose docstring examples are executed.
DOCUMENTED: list[str] = [
    "curvsketch.operators.curvature:HessianOperator",
    "curvsketch.analysis.overlap_curves:overlap_curve",
    "curvsketch.sketch.aposteriori:aposteriori_error",
    "curvsketch.sketch.seigh:seigh",
]

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _resolve(target: str) -> object:
    module_name, _, qualname = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("target", DOCUMENTED)
def test_docstring_examples_run(target: str) -> None:
    obj = _resolve(target)
    finder = doctest.DocTestFinder(recurse=False, exclude_empty=True)
    tests = [t for t in finder.find(obj, target, globs={}) if t.examples]
    assert tests, f"{target} has no >>> example in its docstring"
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    failed = attempted = 0
    for test in tests:
        result = runner.run(test, out=report.append)
        failed, attempted = failed + result.failed, attempted + result.attempted
    assert failed == 0, f"{target}: {failed} of {attempted} examples failed\n" + "".join(report)
    assert attempted >= 2, f"{target}: expected a few examples, ran {attempted}"
