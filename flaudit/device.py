"""Device selection: cuda when present, never required."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """`cuda` if a GPU is visible, else `cpu`."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_problem(name: str) -> str | None:
    """None when device `name` (auto, cpu, cuda, cuda:N, mps) is present on this machine, else why not."""
    if name in ("auto", "cpu"):
        return None
    if name == "mps":
        return None if torch.backends.mps.is_available() else "'mps' is not present: no Apple GPU (MPS) on this machine; use auto or cpu"
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        return f"{name!r} is not one of auto, cpu, cuda, cuda:N, mps"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return f"{name!r} is not present: no CUDA GPU is visible on this machine; use auto or cpu"
    if int(index or 0) >= count:
        return f"{name!r} is not present: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
    return None


def resolve_device(name: str | torch.device | None) -> torch.device:
    """Turn "auto"/None/"cpu"/"cuda[:N]"/"mps" into a torch.device, falling back to CPU for auto.

    Raises:
        FlauditError: the device is not one of those, or not present on this machine.
    """
    if name is None or name == "auto":
        return default_device()
    if isinstance(name, torch.device) and name.type not in ("cuda", "mps"):
        return name
    problem = device_problem(str(name))
    if problem:
        from flaudit.errors import FlauditError

        raise FlauditError(f"device {problem}")
    return torch.device(name)
