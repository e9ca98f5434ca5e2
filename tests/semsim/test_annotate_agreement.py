"""Agreement figures against published and reference values: Fleiss' worked example, scikit-learn's Cohen's kappa."""

from __future__ import annotations

import math
import random

import pytest
from sklearn.metrics import cohen_kappa_score

from semsim.annotate.agreement import (
    cohen_kappa,
    fleiss_kappa,
    majority,
    percent_agreement,
)

# Fleiss (1971) as worked on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters, 5 categories,
# P = 0.378, P_e = 0.213, kappa = 0.210.
FLEISS_TABLE = [
    (0, 0, 0, 0, 14), (0, 2, 6, 4, 2), (0, 0, 3, 5, 6), (0, 3, 9, 2, 0), (2, 2, 8, 1, 1),
    (7, 7, 0, 0, 0), (3, 2, 6, 3, 0), (2, 5, 3, 2, 2), (6, 5, 2, 1, 0), (0, 2, 2, 3, 7),
]


def _ratings(table):
    return {f"s{i}": [category for category, n in enumerate(row) for _ in range(n)] for i, row in enumerate(table)}


def test_fleiss_kappa_matches_the_worked_example() -> None:
    ratings = _ratings(FLEISS_TABLE)
    assert percent_agreement(ratings) == pytest.approx(0.378, abs=5e-4)
    assert fleiss_kappa(ratings) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_leaves_out_single_judgements_and_is_nan_without_variation() -> None:
    ratings = _ratings(FLEISS_TABLE)
    assert fleiss_kappa({**ratings, "lonely": [3]}) == fleiss_kappa(ratings)
    assert math.isnan(fleiss_kappa({"a": [1], "b": [0]}))
    assert math.isnan(fleiss_kappa({"a": [True, True], "b": [True, True]}))
    assert fleiss_kappa({"a": [True, True], "b": [False, False]}) == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_matches_scikit_learn(seed: int) -> None:
    rng = random.Random(seed)
    first = [rng.choice("abc") for _ in range(40)]
    second = [x if rng.random() < 0.6 else rng.choice("abc") for x in first]
    assert cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second))


def test_cohen_kappa_edge_cases() -> None:
    assert math.isnan(cohen_kappa([], []))
    assert math.isnan(cohen_kappa([True, True], [True, True]))
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa([True], [True, False])


def test_majority_is_none_on_a_tie() -> None:
    assert majority([True, True, False]) is True
    assert majority([True, False]) is None
    assert majority([]) is None
