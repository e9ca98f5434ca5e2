"""Progress bars that are quiet under --quiet and in CI."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) every progress bar of this process."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet or os.environ.get("CI", "").lower() in {"1", "true", "yes"} or os.environ.get("FLAUDIT_QUIET") == "1"


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> "tqdm[T]":
    """A tqdm bar, disabled when quiet."""
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=is_quiet(), **kwargs)
