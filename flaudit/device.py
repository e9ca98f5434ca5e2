"""Device selection: cuda when present, never required."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """`cuda` if a GPU is visible, else `cpu`."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """Turn "auto"/None/"cpu"/"cuda[:N]" into a torch.device, falling back to CPU for auto."""
    if name is None or name == "auto":
        return default_device()
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from flaudit.errors import FlauditError

        raise FlauditError(f"device {name!r} was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return device
