"""Seeds for every purpose of a run, derived from the scenario's one seed (torch-free)."""

from __future__ import annotations

import numpy as np


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 63-bit seed for one purpose (e.g. ("client", round, partition)), independent across purposes."""
    words = [seed] + [p if isinstance(p, int) else int.from_bytes(p.encode(), "little") % (2**32) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array([1, 2**32], dtype=np.uint64)) & (2**63 - 1)
