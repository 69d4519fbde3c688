"""Row access for dense and factored bases, and the import boundary of the layer."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from analysis._helpers import (
    F64,
    Factored,
    rand_orth,
)
from curvsketch.analysis import RowAccess
from curvsketch.analysis.rows import (
    basis_shape,
    gather_rows,
    iter_row_blocks,
    leading_columns,
    row_norms_sq,
)


def test_gather_rows_dense_and_factored() -> None:
    U = rand_orth(30, 5, 0)
    fac = Factored(U)
    assert isinstance(fac, RowAccess)
    idx = torch.tensor([29, 0, 7, 7])
    assert torch.equal(gather_rows(U, idx), U[idx])
    assert torch.equal(gather_rows(fac, idx), U[idx])
    assert basis_shape(fac) == (30, 5)
    with pytest.raises(ValueError, match="'index' must lie in range\\(D\\)"):
        gather_rows(U, torch.tensor([30]))
    with pytest.raises(TypeError, match="integer dtype"):
        gather_rows(U, torch.tensor([True, False]))


def test_blocks_norms_and_leading_columns() -> None:
    U = rand_orth(23, 6, 1)
    fac = Factored(U)
    blocks = list(iter_row_blocks(fac, 5, n_cols=4))
    assert [s for s, _ in blocks] == [0, 5, 10, 15, 20]
    assert torch.equal(torch.cat([b for _, b in blocks]), U[:, :4])
    assert torch.allclose(row_norms_sq(fac, 3, block_rows=4), U[:, :3].square().sum(1))
    assert row_norms_sq(U).dtype == F64
    head = leading_columns(fac, 2)
    assert head.shape == (23, 2)
    assert torch.equal(head.rows(torch.tensor([3])), U[3:4, :2])
    with pytest.raises(ValueError, match="'k' must be in \\[1, 6\\]"):
        leading_columns(U, 7)
    with pytest.raises(ValueError, match="'block_rows'"):
        list(iter_row_blocks(U, 0))
    with pytest.raises(ValueError, match="'U' must be a 2-D"):
        basis_shape(torch.ones(3, dtype=F64))


def test_analysis_imports_no_other_layer() -> None:
    """Statically: no analysis module imports operators/sketch/experiments/cli/store."""
    import ast
    from pathlib import Path

    import curvsketch.analysis as pkg

    forbidden = ("operators", "sketch", "experiments", "cli", "store")
    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                assert not (
                    parts[0] == "curvsketch" and len(parts) > 1 and parts[1] in forbidden
                ), f"{path.name} imports {name}"


def test_analysis_import_adds_no_layer_and_no_matplotlib() -> None:
    """Dynamically: importing analysis (after the parent package) loads no other layer."""
    code = (
        "import sys, curvsketch\n"
        "before = set(sys.modules)\n"
        "import curvsketch.analysis\n"
        "new = set(sys.modules) - before\n"
        "bad = [m for m in new if m.startswith('curvsketch.') and not "
        "m.startswith('curvsketch.analysis') or m.startswith('matplotlib')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
