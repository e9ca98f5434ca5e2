"""Shared fixtures of the audit tests: sklearn digits as [0, 1] tensors and a cached oracle."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("FLAUDIT_QUIET", "1")


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, test_x, test_y): sklearn digits, 8x8 grayscale in [0, 1], 1,400 / 397 split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm[:1400]], y[perm[:1400]], x[perm[1400:]], y[perm[1400:]]


@pytest.fixture(scope="session")
def digits_oracle(digits, tmp_path_factory):
    from audit.oracle import train_oracle

    train_x, train_y, test_x, test_y = digits
    path = tmp_path_factory.mktemp("oracle") / "oracle_digits.safetensors"
    return train_oracle(train_x, train_y, num_classes=10, cache_path=path, val_images01=test_x, val_labels=test_y, epochs=10, net_width=16)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on the shared 2-core machine, spinning OpenMP workers cost more than they give."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
