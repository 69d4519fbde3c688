"""Every repository path named in code, configs and docs exists.

Docstrings, config comments, benchmark scripts, tests, ``docs/`` and ``README.md`` name files of
the repository (``docs/paper.md`` §4, ``configs/mnist16.toml``,
``benchmarks/results/seigh_mnist.md``, ``tests/store/test_store_resume.py``, ...). A file
that is renamed or removed leaves such a name dangling; this test finds them all and lists
each with the file and line that names it. ``CHANGELOG.md`` is not scanned: history may
name files that no longer exist.

What counts as a path: a run of path characters that starts with one of :data:`ROOTS`
(``curvsketch/...`` alone means ``src/curvsketch/...``), is not part of a longer path
(``/work/main/docs/x.md``, ``OUT/docs/x.md`` are not), and ends in one of
:data:`EXTENSIONS`. Trailing punctuation, ``::test_name`` suffixes and ``§`` anchors end a
path. Skipped: names with a placeholder (``*``, ``{...}``, ``<...>``, ``XXXXXXXX``, ``$``)
and generated output folders (:data:`GENERATED`). A ``§N`` right after a ``docs/`` page
must name a numbered heading of that page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Where paths are looked for (globs relative to the repository root).
SCANNED = (
    "src/**/*.py",
    "configs/**/*.toml",
    "benchmarks/**/*.py",
    "benchmarks/**/*.sh",
    "tests/**/*.py",
    "docs/**/*.md",
    "README.md",
)
#: Folders under the scanned ones that are not the project's sources.
NOT_SCANNED = ("benchmarks/out/", ".venv", "__pycache__")
#: First components of a repository-relative path.
ROOTS = ("docs", "configs", "benchmarks", "tests", "src/curvsketch", "curvsketch")
EXTENSIONS = ("md", "toml", "py", "json", "png", "sh", "txt", "csv")
#: Output folders that benchmarks and runs write and git ignores (never committed).
GENERATED = ("benchmarks/out/",)

_PATH = re.compile(
    r"(?<![\w./\-~$])"  # not the tail of a longer (absolute, OUT/..., ../) path
    r"(?P<path>(?:" + "|".join(re.escape(r) for r in ROOTS) + r")/[\w./\-]*[\w/])"
)
_PLACEHOLDER_AFTER = tuple("*{<$[")
_ANCHOR = re.compile(r"(?P<path>docs/[\w./\-]+\.md)`{0,2}\s*§\s*(?P<section>\d+(?:\.\d+)*)")
_HEADING = re.compile(r"^#+\s*(?:§\s*)?(?P<number>\d+(?:\.\d+)*)[.\s]", re.M)

#: Dangling references in files this test's author does not own, each with its reason.
#: Maps (file naming it, path named) -> why it is still dangling. The lead fixes the
#: reference (or creates the file) and removes the entry; an entry whose reference is
#: gone or now resolves fails :func:`test_pending_entries_are_still_needed`.
PENDING: dict[tuple[str, str], str] = {
    # Written by benchmarks/probes/gpu_report.py from a GPU run of
    # benchmarks/probes/gpu_check.sh, which has not run yet: create it with that run, or say
    # "written by gpu_report.py" without naming the file as if it existed.
    ("README.md", "benchmarks/results/gpu_h200.md"): "GPU report not yet produced",
    ("benchmarks/probes/gpu_check.sh", "benchmarks/results/gpu_h200.md"): (
        "GPU report not yet produced"
    ),
}


@dataclass(frozen=True)
class Reference:
    """One path named at one line of one file."""

    source: str
    line: int
    path: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line} -> {self.path}"


def scanned_files() -> list[Path]:
    """The files searched for paths, sorted; not generated folders, not this file."""
    files: set[Path] = set()
    for pattern in SCANNED:
        for path in REPO.glob(pattern):
            rel = path.relative_to(REPO).as_posix()
            if path.resolve() == Path(__file__).resolve():
                continue  # its examples and PENDING name dangling paths on purpose
            if path.is_file() and not any(part in rel for part in NOT_SCANNED):
                files.add(path)
    return sorted(files)


def paths_in_line(text: str) -> list[str]:
    """Repository-relative file paths named in one line of text (placeholders skipped)."""
    found = []
    for match in _PATH.finditer(text):
        path = match.group("path").rstrip("./-")
        after = text[match.start("path") + len(path) : match.start("path") + len(path) + 1]
        if after and after in _PLACEHOLDER_AFTER:
            continue
        if "XXXX" in path or path.rsplit(".", 1)[-1] not in EXTENSIONS or "." not in path:
            continue
        if path.startswith("curvsketch/"):
            path = "src/" + path
        if path.startswith(GENERATED):
            continue
        found.append(path)
    return found


def references() -> list[Reference]:
    """Every path named in the scanned files, with where it is named."""
    refs = []
    for file in scanned_files():
        source = file.relative_to(REPO).as_posix()
        lines = file.read_text(encoding="utf-8").splitlines()
        for number, text in enumerate(lines, start=1):
            refs.extend(Reference(source, number, path) for path in paths_in_line(text))
    return refs


def dangling() -> list[Reference]:
    """References whose path does not exist in the repository."""
    return [ref for ref in references() if not (REPO / ref.path).exists()]


def test_the_scan_sees_the_cited_pages():
    refs = references()
    assert len(scanned_files()) > 50
    named = {ref.path for ref in refs}
    assert {"docs/paper.md", "configs/mnist16.toml", "benchmarks/import_graph.py"} <= named
    assert any(ref.source.startswith("src/") for ref in refs)
    assert any(ref.source.startswith("configs/") for ref in refs)


def test_paths_are_read_as_a_reader_would():
    line = (
        "See ``docs/paper.md`` §4, `tests/store/test_store_resume.py::test_kill`, "
        "configs/mnist16.toml. and curvsketch/experiments/schema.py; "
        "/work/main/docs/x.md OUT/docs/y.md ../docs/z.md benchmarks/results/suite_*.json "
        "benchmarks/results/estimators.{md,json} OUT/checkpoints/step_XXXXXXXX.pt "
        "tests/<dir> benchmarks/out/a.json benchmarks/results/ docs/"
    )
    assert paths_in_line(line) == [
        "docs/paper.md",
        "tests/store/test_store_resume.py",
        "configs/mnist16.toml",
        "src/curvsketch/experiments/schema.py",
    ]


def test_every_named_path_exists():
    missing = [ref for ref in dangling() if (ref.source, ref.path) not in PENDING]
    assert not missing, "paths named but not in the repository:\n" + "\n".join(
        f"  {ref}" for ref in missing
    )


def test_pending_entries_are_still_needed():
    still = {(ref.source, ref.path) for ref in dangling()}
    stale = sorted(key for key in PENDING if key not in still)
    assert not stale, "PENDING entries that no longer dangle (remove them):\n" + "\n".join(
        f"  {source} -> {path}" for source, path in stale
    )


def test_docs_sections_cited_exist():
    bad = []
    for file in scanned_files():
        source = file.relative_to(REPO).as_posix()
        for number, text in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            for match in _ANCHOR.finditer(text):
                page = REPO / match.group("path")
                if not page.exists():
                    continue  # reported by test_every_named_path_exists
                sections = {m.group("number") for m in _HEADING.finditer(page.read_text())}
                if match.group("section") not in sections:
                    bad.append(f"  {source}:{number} -> {match.group(0)}")
    assert not bad, "sections cited that the page does not have:\n" + "\n".join(bad)
