"""The threat model: what the attacker is assumed to know beyond what the server receives.

Assumptions are explicit objects, recorded with every attack and every audit and shown in
every report, never silent shortcuts: a report of an attack that was given the labels says
"labels given", not "labels recovered 1.00".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from flaudit.rundir import CaptureKey


@dataclass(frozen=True)
class ThreatModel:
    """The attacker's knowledge beyond the `ServerView`.

    Args:
        known_labels: the attacker is given each client's true labels (the iDLG/Inverting Gradients
            evaluations' setting); otherwise it recovers them from the update.
    """

    known_labels: bool = False

    def describe(self) -> str:
        return "labels given to the attacker" if self.known_labels else "labels recovered by the attack"

    def to_dict(self) -> dict[str, Any]:
        return {"known_labels": self.known_labels}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ThreatModel:
        return cls(known_labels=bool((data or {}).get("known_labels", False)))


@dataclass(frozen=True)
class KnownLabels:
    """The true labels handed to the attack under the known-labels threat model.

    Built by the orchestrator, which alone holds both the captures and the vault; the attack
    stage receives this object and never the vault.

    Args:
        labels: per update, its (B,) int64 labels (an update whose vault file is corrupt is missing
            here and given to the stage as `corrupt` instead).
    """

    labels: Mapping[CaptureKey, torch.Tensor]
