"""Defenses by name: the spec (`defenses.specs`) paired with the function that applies it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from defenses import functional as F
from defenses.specs import DEFENSE_SPECS, DefenseSpec, validate_defense
from flaudit.registry import Registry


@dataclass(frozen=True)
class DefenseDef:
    """A registered defense: how to apply it, and its spec."""

    apply: Callable[..., F.Update]
    spec: DefenseSpec

    @property
    def params(self) -> type:
        """The frozen dataclass declaring the defense's parameters (`defenses.specs`)."""
        return self.spec.params

    @property
    def random(self) -> bool:
        return self.spec.random


_APPLY: dict[str, Callable[..., F.Update]] = {"gaussian": F.gaussian, "prune": F.prune, "clip_noise": F.clip_noise}

DEFENSES: Registry[DefenseDef] = Registry("defense")
for _name in DEFENSE_SPECS:
    DEFENSES.add(_name, DefenseDef(_APPLY[_name], DEFENSE_SPECS.get(_name)))


def apply_defenses(
    update: Sequence[torch.Tensor],
    defenses: Sequence[tuple[str, Mapping[str, float]]],
    *,
    generator: torch.Generator,
) -> F.Update:
    """Apply `defenses` (name, params) in order to an update."""
    out = tuple(update)
    for name, params in defenses:
        entry = DEFENSES.get(name)
        kwargs = {k: v for k, v in params.items() if k != "delta"}  # delta is for accounting only
        if entry.random:
            kwargs["generator"] = generator
        out = entry.apply(out, **kwargs)
    return out


__all__ = ["DEFENSES", "DefenseDef", "apply_defenses", "validate_defense"]
