"""How far judges agree: percent agreement, Cohen's kappa (two judges), Fleiss' kappa (many), the majority.

Plain functions on judgements (any hashable labels); `flaudit annotate stats` applies them to
people's answers and to the oracle's. Items judged by fewer than two judges say nothing about
agreement and are left out of the many-judge figures.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence


def percent_agreement(ratings: Mapping[str, Sequence[Hashable]]) -> float:
    """Mean, over items with at least two judgements, of the share of judge pairs that agree (NaN when none)."""
    shares = []
    for labels in ratings.values():
        n = len(labels)
        if n < 2:
            continue
        counts = Counter(labels)
        shares.append(sum(c * (c - 1) for c in counts.values()) / (n * (n - 1)))
    return sum(shares) / len(shares) if shares else math.nan


def fleiss_kappa(ratings: Mapping[str, Sequence[Hashable]]) -> float:
    """Fleiss' kappa over items with at least two judgements, any number of judges per item.

    P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1)) is item i's agreement, P = mean P_i, and chance
    agreement P_e = sum_j p_j^2 with p_j the share of all judgements in category j
    (Fleiss 1971; with a varying n_i, as in Fleiss, Levin & Paik, 2003). NaN without two
    judgements of one item, or when every judgement is the same category (P_e = 1).
    """
    kept = {item: labels for item, labels in ratings.items() if len(labels) >= 2}
    if not kept:
        return math.nan
    observed = percent_agreement(kept)
    totals = Counter(label for labels in kept.values() for label in labels)
    count = sum(totals.values())
    chance = sum((c / count) ** 2 for c in totals.values())
    return math.nan if chance == 1 else (observed - chance) / (1 - chance)


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's kappa of two judges over the same items (in the same order). NaN when empty or when
    both judges gave one and the same category throughout (chance agreement 1)."""
    if len(first) != len(second):
        raise ValueError(f"cohen_kappa: {len(first)} and {len(second)} judgements; both judges must judge the same items")
    n = len(first)
    if n == 0:
        return math.nan
    observed = sum(a == b for a, b in zip(first, second)) / n
    left, right = Counter(first), Counter(second)
    chance = sum(left[label] * right[label] for label in left) / (n * n)
    return math.nan if chance == 1 else (observed - chance) / (1 - chance)


def majority(labels: Sequence[Hashable]) -> Hashable | None:
    """The label most judges gave, or None on a tie (or no judgement)."""
    ranked = Counter(labels).most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]
