"""Client-side defenses: pure functions on an update, a registry by name, accounting, a Flower mod."""

from defenses.accounting import PrivacySpent, gaussian_epsilon
from defenses.functional import clip, clip_noise, gaussian, global_norm, prune
from defenses.registry import DEFENSES, apply_defenses, validate_defense

__all__ = [
    "DEFENSES",
    "PrivacySpent",
    "apply_defenses",
    "clip",
    "clip_noise",
    "gaussian",
    "gaussian_epsilon",
    "global_norm",
    "prune",
    "validate_defense",
]
