"""The scenario's `attack:` section, torch-free, so that the attack stage takes it without `fl_sim`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from attacks.params import ATTACK_PARAMS, check_attack_params
from flaudit.fields import FieldError, check, spec


@dataclass(frozen=True)
class AttackConfig:
    """The attack run on the captured updates after the federation (checked when built).

    Args:
        name: attack registry name (`dlg`, `idlg`, `inverting_gradients`, `gradinversion`, `analytic_linear`).
        params: the attack's hyperparameters (`attacks.params`), checked against its declarations.
        known_labels: threat model: the attacker is given the true labels (recorded in the report).
        rounds: rounds to attack (None: every captured round).
        clients: clients to attack (None: every captured client).
        seed: seed of the attack's random initialisations (each update's own, derived from it).
        updates_per_batch: how many captured updates (of any clients and rounds) are inverted as
            one batched computation; lower it when the batch does not fit in memory.
    """

    name: str = spec("inverting_gradients", doc="attack registry name")
    params: Mapping[str, Any] = field(default_factory=dict)
    known_labels: bool = spec(False, doc="threat model: the attacker is given the true labels")
    rounds: tuple[int, ...] | None = spec(None, ge=1, nonempty=True, doc="rounds to attack (default: every captured round)")
    clients: tuple[int, ...] | None = spec(None, ge=0, nonempty=True, doc="clients to attack (default: every captured client)")
    seed: int = spec(0, ge=0, doc="seed of the attack's random initialisations")
    updates_per_batch: int = spec(
        16, ge=1, le=4096, doc="at most this many captured updates (any clients and rounds) inverted as one batched computation"
    )

    def __post_init__(self) -> None:
        check(self)
        check_attack(self)


def check_attack(config: Any) -> None:
    """Check a config's `name` against the attack registry and its `params` against that attack's
    declarations (the scenario's `attack:` and the study's attacks share this rule).

    Raises:
        FieldError: naming the owner's `name` or `params.<key>`.
    """
    owner = type(config).__name__
    if config.name not in ATTACK_PARAMS:
        raise FieldError(owner, "name", ATTACK_PARAMS.unknown_message(config.name))
    try:
        check_attack_params(config.name, config.params)
    except FieldError as err:
        raise err.within(owner, "params") from None
