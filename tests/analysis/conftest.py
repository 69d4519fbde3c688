"""Analysis tests: one BLAS thread (the CI box has 2 shared cores).

Helpers shared by these tests live in ``_helpers.py``, imported as ``analysis._helpers``
(``tests`` is on the pytest ``pythonpath``).
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Small linear algebra is ~10× faster single-threaded on a loaded 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
