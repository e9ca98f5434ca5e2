"""The pipeline tests run on one torch thread (the digits and oracle fixtures are in tests/conftest.py)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("FLAUDIT_QUIET", "1")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on the shared 2-core machine, spinning OpenMP workers cost more than they give."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
