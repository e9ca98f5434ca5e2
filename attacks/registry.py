"""Attacks by name: `create_attack("inverting_gradients", iterations=2000, tv=1e-4)`."""

from __future__ import annotations

import dataclasses
from typing import Any

from attacks.analytic import AnalyticLinear
from attacks.base import Attack
from attacks.dlg import DLG, IDLG, DLGPaper, IDLGPaper
from attacks.inverting_gradients import GradInversion, InvertingGradients
from attacks.params import ATTACK_PARAMS, build_params
from flaudit.registry import Registry

ATTACKS: Registry[type[Attack]] = Registry("attack")
for _cls in (DLG, IDLG, DLGPaper, IDLGPaper, InvertingGradients, GradInversion, AnalyticLinear):
    ATTACKS.add(_cls.name, _cls)
# The torch-free declarations (`attacks.params`) and the attacks name the same set.
assert ATTACKS.names() == ATTACK_PARAMS.names(), (ATTACKS.names(), ATTACK_PARAMS.names())


def attack_parameters(name: str) -> dict[str, Any]:
    """The default hyperparameters of attack `name` (raises UnknownNameError listing known attacks)."""
    cls = ATTACKS.get(name)
    return {f.name: f.default for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


def create_attack(name: str, **params: Any) -> Attack:
    """The attack called `name` with `params` overriding its paper's defaults.

    Raises:
        UnknownNameError: no attack of that name (the message lists the known ones).
        AttackParameterError: an unknown parameter, or a value of the wrong type or out of
            range (the message names the attack, the parameter and what is allowed).
    """
    return build_params(ATTACKS.get(name), name, params)


__all__ = ["ATTACKS", "attack_parameters", "create_attack"]
