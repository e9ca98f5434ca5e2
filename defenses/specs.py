"""Defense names and their parameters' types and ranges, without torch.

The scenario loader (and `flaudit validate`) checks defenses against these specs before any
heavy import; `defenses.registry` pairs each name with the function that applies it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from flaudit.errors import ScenarioError
from flaudit.registry import Registry, closest


@dataclass(frozen=True)
class Param:
    """One defense parameter: its default (None = required) and its allowed interval."""

    default: float | None
    low: float
    high: float = math.inf
    low_inclusive: bool = True
    high_inclusive: bool = True

    def describe(self) -> str:
        left = "[" if self.low_inclusive else "("
        right = "]" if self.high_inclusive else ")"
        return f"{left}{self.low:g}, {self.high:g}{right}"

    def allows(self, value: float) -> bool:
        above = value >= self.low if self.low_inclusive else value > self.low
        below = value <= self.high if self.high_inclusive else value < self.high
        return above and below


@dataclass(frozen=True)
class DefenseSpec:
    """A defense's parameters, whether it draws random numbers, and one line on what it does."""

    params: Mapping[str, Param]
    random: bool
    doc: str


DEFENSE_SPECS: Registry[DefenseSpec] = Registry("defense")
DEFENSE_SPECS.add("gaussian", DefenseSpec({"sigma": Param(None, 0.0)}, True, "add N(0, sigma^2) to every entry"))
DEFENSE_SPECS.add(
    "prune", DefenseSpec({"ratio": Param(None, 0.0, 1.0)}, False, "zero the ratio share of smallest-magnitude entries per tensor")
)
DEFENSE_SPECS.add(
    "clip_noise",
    DefenseSpec(
        {"clip_norm": Param(None, 0.0, low_inclusive=False), "noise_multiplier": Param(None, 0.0),
         "delta": Param(1e-5, 0.0, 1.0, low_inclusive=False, high_inclusive=False)},
        True,
        "clip the update to L2 norm clip_norm, add N(0, (noise_multiplier*clip_norm)^2); (epsilon, delta) accounted",
    ),
)


def validate_defense(name: str, params: Mapping[str, object], *, where: str) -> dict[str, float]:
    """Check a defense's name and parameters; return the parameters with defaults filled in.

    Raises:
        ScenarioError: naming `where` (file and key path), the problem, and what is allowed.
    """
    if name not in DEFENSE_SPECS:
        raise ScenarioError(f"{where}.name: {DEFENSE_SPECS.unknown_message(name)}")
    spec = DEFENSE_SPECS.get(name)
    out: dict[str, float] = {}
    for key, value in params.items():
        if key not in spec.params:
            hint = closest(key, tuple(spec.params))
            suggestion = f" (did you mean {hint!r}?)" if hint else ""
            raise ScenarioError(f"{where}.{key}: unknown parameter of {name!r}{suggestion}; allowed: {', '.join(spec.params)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{where}.{key}: expected a number, got {value!r}")
        if not spec.params[key].allows(float(value)):
            raise ScenarioError(f"{where}.{key}: {value!r} is out of range; allowed: {spec.params[key].describe()}")
        out[key] = float(value)
    for key, param in spec.params.items():
        if key not in out:
            if param.default is None:
                raise ScenarioError(f"{where}.{key}: required parameter of {name!r} is missing; allowed: {param.describe()}")
            out[key] = param.default
    return out
