"""Cost limits: the largest sizes a file may ask for before flaudit refuses to spend the memory or the days.

One table, used by the scenario schema (`spec(limit=...)` on its keys) and by the readers of a
run directory, which check a capture's recorded sizes before building anything from them
(`check_capture_sizes`). A scenario raises a limit on purpose with a top-level `limits:`
section (`limits: {clients: 20000}`; see `flaudit.fields.enforcing_limits`). Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flaudit.errors import CaptureCorruptError
from flaudit.fields import (
    FieldError,
    build,
    check,
    enforcing_limits,
    raised_limits,
    spec,
)

# Each bound is far above what a published attack or audit uses, and below what fills a
# 128 GB machine or runs for days on one GPU.
CLIENTS = 10_000  # simulated clients (Flower SuperNodes; Ray holds one actor state each)
ROUNDS = 10_000  # server rounds
LOCAL_EPOCHS = 1_000  # FedAvg local epochs
LOCAL_STEPS = 100_000  # FedAvg local SGD steps
BATCH_SIZE = 4_096  # a client's batch (the attack inverts up to one batch per local step)
IMAGE_SIZE = 512  # image side, pixels
WIDTH = 1_024  # a model's base width (the ConvNet's widest layer is 4x)
ITERATIONS = 100_000  # an attack's optimiser steps per restart (Inverting Gradients uses 24,000)
MAX_ITER = 1_000  # L-BFGS inner iterations per step (torch's default is 20)
NUM_EXAMPLES = 1_000_000  # examples one client reports for one update
NUM_CLASSES = 100_000  # model outputs
IN_CHANNELS = 64  # image channels


@dataclass(frozen=True)
class CaptureSizes:
    """The sizes a capture's JSON records that decide what rebuilding its model and attacking it cost."""

    width: int | None = spec(None, ge=1, limit=WIDTH, doc="the model's base width")
    image_size: int | None = spec(None, ge=1, limit=IMAGE_SIZE, doc="image side, pixels")
    in_channels: int | None = spec(None, ge=1, limit=IN_CHANNELS, doc="image channels")
    num_classes: int | None = spec(None, ge=1, limit=NUM_CLASSES, doc="model outputs")
    num_examples: int | None = spec(None, ge=0, limit=NUM_EXAMPLES, doc="examples the client reports")
    batch_size: int | None = spec(None, ge=1, limit=BATCH_SIZE, doc="the client's batch size")
    local_steps: int | None = spec(None, ge=0, limit=LOCAL_STEPS, doc="SGD steps the client ran")

    def __post_init__(self) -> None:
        check(self)


_SECTIONS = {"model": ("width", "image_size", "in_channels", "num_classes"), "meta": ("num_examples", "batch_size", "local_steps")}


def check_capture_sizes(info: Any, *, path: str | Path) -> None:
    """Refuse a capture whose recorded sizes pass the cost limits, before its model is built.

    Only the sizes are checked here (other keys are the reader's business); the limits a run's
    scenario raised apply when the caller reads inside `enforcing_limits(scenario.limits)`.

    Args:
        info: the capture's JSON (`{"model": {...}, "meta": {...}, ...}`).
        path: the JSON's path, for the message.

    Raises:
        CaptureCorruptError: `PATH: model.width: 100000000 is above the cost limit 1024 ...`, every
            problem at once.
    """
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for section, keys in _SECTIONS.items():
        part = info.get(section) if isinstance(info, Mapping) else None
        for key in keys if isinstance(part, Mapping) else ():
            if key in part:
                values[key], where[key] = part[key], section
    try:
        with enforcing_limits(raised_limits()):
            build(CaptureSizes, values, owner="")
    except FieldError as err:
        lines = [f"{path}: {where.get(e.key.split('[')[0], '')}.{e.key}: {e.problem}" for e in err.errors]
        raise CaptureCorruptError("\n".join(lines)) from None


__all__ = [
    "BATCH_SIZE", "CLIENTS", "IMAGE_SIZE", "IN_CHANNELS", "ITERATIONS", "LOCAL_EPOCHS", "LOCAL_STEPS", "MAX_ITER", "NUM_CLASSES",
    "NUM_EXAMPLES", "ROUNDS", "WIDTH", "CaptureSizes", "check_capture_sizes",
]
