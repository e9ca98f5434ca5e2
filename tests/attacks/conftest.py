"""Quiet progress bars and two threads for the attack tests."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("FLAUDIT_QUIET", "1")


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)
