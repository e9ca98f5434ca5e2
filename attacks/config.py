"""The scenario's `attack:` section, torch-free, so that the attack stage takes it without `fl_sim`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flaudit.fields import bounds, check_ranges


@dataclass(frozen=True)
class AttackConfig:
    """The attack run on the captured updates after the federation.

    Args:
        name: attack registry name (`dlg`, `idlg`, `inverting_gradients`, `gradinversion`, `analytic_linear`).
        params: the attack's hyperparameters.
        known_labels: threat model: the attacker is given the true labels (recorded in the report).
        rounds: rounds to attack (None: every captured round).
        clients: clients to attack (None: every captured client).
        seed: seed of the attack's random initialisations (each update's own, derived from it).
        clients_per_batch: how many of one round's clients are inverted as one batched
            computation (None: all of them); lower it when the batch does not fit in memory.
    """

    name: str = "inverting_gradients"
    params: Mapping[str, Any] = field(default_factory=dict)
    known_labels: bool = False
    rounds: tuple[int, ...] | None = None
    clients: tuple[int, ...] | None = None
    seed: int = field(default=0, metadata=bounds(0))
    clients_per_batch: int | None = field(default=None, metadata=bounds(1))

    def __post_init__(self) -> None:
        check_ranges(self)
