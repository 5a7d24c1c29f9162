"""Shared test set-up: the repository root on ``sys.path`` (entry scripts and ``bench/`` import from it) and the
fixtures several test files use."""
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for a module of tiny networks: on a shared, loaded 2-core machine several threads
    spin while waiting for a core and make small convolutions 10-30x slower. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def api():
    """The NAS-Bench-201 benchmark shipped with the package (read-only)."""
    from anglenas.nb201.api import Benchmark

    return Benchmark.load()
