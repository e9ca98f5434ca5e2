"""Client-side defenses: pure functions on an update, a registry by name, accounting.

The exports load on first use: `defenses.specs` (names and parameter ranges) needs no torch.
"""

from flaudit.lazy import lazy_exports

_EXPORTS = {
    "DEFENSES": "defenses.registry",
    "DEFENSE_SPECS": "defenses.specs",
    "PrivacySpent": "defenses.accounting",
    "apply_defenses": "defenses.registry",
    "clip": "defenses.functional",
    "clip_noise": "defenses.functional",
    "gaussian": "defenses.functional",
    "gaussian_epsilon": "defenses.accounting",
    "global_norm": "defenses.functional",
    "prune": "defenses.functional",
    "validate_defense": "defenses.specs",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
