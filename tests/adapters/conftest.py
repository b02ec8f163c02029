"""Fixtures of the adapter tests (helpers live in adapter_helpers.py: `conftest` is a module name other folders use)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny models run fastest on one thread, and a second OpenMP thread on a busy machine can stall every small
    op for a scheduler slice (measured: a 24 x 64 linear took 30 ms instead of 10 us with 2 threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)
