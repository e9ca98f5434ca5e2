"""Gradient-inversion attacks on what an honest-but-curious server sees (`ServerView`).

The exports load on first use, so `attacks.params` (the declared hyperparameters) is usable
without torch, e.g. by `flaudit validate`.
"""

from flaudit.lazy import lazy_exports

_EXPORTS = {
    "ATTACKS": "attacks.registry",
    "ATTACK_PARAMS": "attacks.params",
    "Attack": "attacks.base",
    "AttackParameterError": "attacks.params",
    "BatchedAttack": "attacks.base",
    "Reconstruction": "attacks.base",
    "ServerView": "attacks.base",
    "SharedMetadata": "attacks.base",
    "attack_parameters": "attacks.registry",
    "batch_groups": "attacks.matching",
    "check_attack_params": "attacks.params",
    "create_attack": "attacks.registry",
    "reconstruct_in_groups": "attacks.matching",
    "recover_labels": "attacks.labels",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
