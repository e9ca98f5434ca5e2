"""Gradient-inversion attacks on what an honest-but-curious server sees (`ServerView`)."""

from attacks.base import Attack, Reconstruction, ServerView, SharedMetadata
from attacks.params import AttackParameterError
from attacks.registry import ATTACKS, attack_parameters, create_attack

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackParameterError",
    "Reconstruction",
    "ServerView",
    "SharedMetadata",
    "attack_parameters",
    "create_attack",
]
