"""Gradient-inversion attacks on what an honest-but-curious server sees (`ServerView`)."""

from attacks.base import Attack, BatchedAttack, Reconstruction, ServerView, SharedMetadata
from attacks.labels import recover_labels
from attacks.matching import batch_groups, reconstruct_in_groups
from attacks.params import AttackParameterError
from attacks.registry import ATTACKS, attack_parameters, create_attack

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackParameterError",
    "BatchedAttack",
    "Reconstruction",
    "ServerView",
    "SharedMetadata",
    "attack_parameters",
    "batch_groups",
    "create_attack",
    "reconstruct_in_groups",
    "recover_labels",
]
