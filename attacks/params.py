"""Declared, validated hyperparameters for attacks (frozen dataclass fields with allowed ranges)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from flaudit.errors import ScenarioError


class AttackParameterError(ScenarioError):
    """An attack hyperparameter is unknown, of the wrong type or out of range; the message lists what is allowed."""


def hyper(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple[Any, ...] | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field for a hyperparameter with its allowed values.

    Args:
        default: the paper's default; its type (int, float, bool, str) is the parameter's type.
        low: smallest allowed value (inclusive unless `low_open`).
        high: largest allowed value (inclusive).
        low_open: whether `low` itself is excluded.
        choices: the allowed values of a categorical parameter.
        doc: one line for error messages and reports.
    """
    return dataclasses.field(
        default=default,
        metadata={"low": low, "high": high, "low_open": low_open, "choices": choices, "doc": doc, "kind": type(default)},
    )


def describe(field: dataclasses.Field) -> str:  # type: ignore[type-arg]
    """`name: type in range (default x) - doc`, for error messages."""
    meta = field.metadata
    kind = meta.get("kind", type(field.default))
    if meta.get("choices"):
        allowed = "one of " + ", ".join(repr(c) for c in meta["choices"])
    elif meta.get("low") is not None or meta.get("high") is not None:
        left = "(" if meta.get("low_open") else "["
        low = meta.get("low")
        high = meta.get("high")
        allowed = f"{kind.__name__} in {left}{'-inf' if low is None else low}, {'inf' if high is None else high}]"
    else:
        allowed = kind.__name__
    doc = f" - {meta['doc']}" if meta.get("doc") else ""
    return f"{field.name}: {allowed} (default {field.default!r}){doc}"


def allowed_parameters(cls: type) -> str:
    """All of an attack class's hyperparameters with their allowed values, one per line."""
    return "\n".join("  " + describe(f) for f in dataclasses.fields(cls))


def validate(attack: Any, attack_name: str) -> None:
    """Check and coerce every field of a frozen attack dataclass in place (int -> float where declared)."""
    for field in dataclasses.fields(attack):
        meta = field.metadata
        if "kind" not in meta:
            continue
        value = getattr(attack, field.name)
        kind = meta["kind"]
        problem = None
        if kind is bool:
            if not isinstance(value, bool):
                problem = f"must be true or false, got {value!r}"
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                problem = f"must be an integer, got {value!r}"
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                hint = " (write numbers like 1.0e-4 in YAML: PyYAML reads 1e-4 as a string)" if isinstance(value, str) else ""
                problem = f"must be a number, got {value!r}{hint}"
            else:
                value = float(value)
                if not math.isfinite(value):
                    problem = f"must be finite, got {value!r}"
                object.__setattr__(attack, field.name, value)
        elif kind is str and not isinstance(value, str):
            problem = f"must be a string, got {value!r}"
        if problem is None and meta.get("choices") and value not in meta["choices"]:
            problem = f"got {value!r}"
        if problem is None and kind in (int, float):
            low, high = meta.get("low"), meta.get("high")
            if low is not None and (value < low or (meta.get("low_open") and value == low)):
                problem = f"got {value!r}, below the allowed range"
            elif high is not None and value > high:
                problem = f"got {value!r}, above the allowed range"
        if problem is not None:
            raise AttackParameterError(
                f"attack {attack_name!r}: parameter {field.name!r} {problem}; allowed: {describe(field)}\n"
                f"parameters of {attack_name!r}:\n{allowed_parameters(type(attack))}"
            )


__all__ = ["AttackParameterError", "allowed_parameters", "describe", "hyper", "validate"]
