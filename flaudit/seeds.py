"""Seeds for every purpose of a run, derived from the scenario's one seed, and the seeded choice of
the clients that train each round (torch-free)."""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 63-bit seed for one purpose (e.g. ("client", round, partition)), independent across purposes."""
    words = [seed] + [p if isinstance(p, int) else int.from_bytes(p.encode(), "little") % (2**32) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array([1, 2**32], dtype=np.uint64)) & (2**63 - 1)


def clients_per_round(fraction: float, clients: int) -> int:
    """The clients that train each round: `fraction` of them, rounded, and at least one."""
    return max(1, round(fraction * clients))


def chosen_partitions(seed: int, server_round: int, partitions: Iterable[int], per_round: int) -> list[int]:
    """The partitions that train in `server_round`, sorted: `per_round` of them, drawn with a
    generator seeded by (seed, round) (`fl_sim.sampling.SeededSampling`; the scenario's checks ask
    it too, to refuse a capture of clients that never train)."""
    rng = random.Random(derive_seed(seed, "sample", server_round))
    return sorted(rng.sample(sorted(partitions), per_round))
