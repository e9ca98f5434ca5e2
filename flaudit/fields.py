"""Field specs for configuration dataclasses: the allowed interval of a numeric key, declared once
and checked the same way by the YAML loader (`fl_sim.scenario`), by `__post_init__` when a
config is built in Python, and by the command line's flags (torch-free)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any

from flaudit.errors import ScenarioError


def bounds(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> dict[str, Any]:
    """Field metadata: the allowed interval of a numeric key, [low, high] (or (low, high] when `low_open`)."""
    return {"range": (low, high, low_open)}


def range_problem(value: float, metadata: Mapping[str, Any]) -> str | None:
    """`"-3 is out of range; allowed: >= 0"` when `value` is outside the field's interval, else None."""
    low, high, low_open = metadata.get("range", (None, None, False))
    if low is not None and (value <= low if low_open else value < low):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        upper = f" and <= {high:g}" if high is not None else ""
        return f"{value:g} is out of range; allowed: {bound}{upper}"
    if high is not None and value > high:
        return f"{value:g} is out of range; allowed: <= {high:g}"
    return None


def check_ranges(instance: Any) -> None:
    """Check every bounded field of a config dataclass (call from `__post_init__`).

    Raises:
        ScenarioError: `Owner.key: value is out of range; allowed: ...`.
    """
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if "range" not in field.metadata or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        problem = range_problem(value, field.metadata) if math.isfinite(value) else f"{value} is not a finite number"
        if problem:
            raise ScenarioError(f"{type(instance).__name__}.{field.name}: {problem}")


def flag_type(cls: type, name: str) -> Callable[[str], Any]:
    """An argparse `type=` for a command-line flag that sets field `name` of `cls`: parsed as the
    field's number type and checked against its declared interval, so a bad value is argparse's
    one-line `error: argument --flag: ...` (exit status 2), never a traceback."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    hint = typing.get_type_hints(cls)[name]
    kind = float if float in (typing.get_args(hint) or (hint,)) else int

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a number' if kind is float else 'an integer'}") from None
        problem = range_problem(value, field.metadata)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
