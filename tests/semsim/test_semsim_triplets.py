"""Triplet construction: anchor = original, positive from it, negative never itself nor its positives."""

from __future__ import annotations

from semsim.data import Annotation
from semsim.train import build_triplets, split_originals


def _records() -> list[Annotation]:
    def a(o: str, r: str, ok: bool) -> Annotation:
        return Annotation(o, r, "d", "v", "dlg", ok)

    return [
        a("A_ori", "A_r1", True),
        a("A_ori", "A_r2", True),
        a("A_ori", "A_n1", False),
        # Degenerate record: the original listed as its own unrecognisable reconstruction.
        a("A_ori", "A_ori", False),
        a("B_ori", "B_r1", True),  # B has no negative of its own -> fallback
        a("C_ori", "C_n1", False),  # C has no positive -> never an anchor
        a("C_ori", "C_n2", False),
        a("D_ori", "D_r1", True),
        a("D_ori", "A_r1", True),  # a shared file: still never D's negative
    ]


def test_triplet_invariants_over_many_seeds() -> None:
    records = _records()
    positives: dict[str, set[str]] = {}
    for r in records:
        if r.recognisable:
            positives.setdefault(r.original, set()).add(r.reconstruction)
    for seed in range(200):
        triplets = build_triplets(records, extra_negatives=["E_other"], seed=seed)
        assert {t.anchor for t in triplets} == {"A_ori", "B_ori", "D_ori"}
        assert len(triplets) == 2 + 1 + 2
        for t in triplets:
            assert t.negative != t.anchor, "an original is never its own negative"
            assert t.positive in positives[t.anchor], "positives only come from the anchor's own reconstructions"
            assert t.negative not in positives[t.anchor]
        a_negs = {t.negative for t in triplets if t.anchor == "A_ori"}
        assert a_negs == {"A_n1"}, "an original with negatives uses its own"


def test_fallback_negative_comes_from_other_originals() -> None:
    records = _records()
    seen = set()
    for seed in range(200):
        for t in build_triplets(records, seed=seed):
            if t.anchor == "B_ori":
                seen.add(t.negative)
    assert "B_r1" not in seen and "B_ori" not in seen
    assert seen <= {"A_r1", "A_r2", "A_n1", "C_n1", "C_n2", "D_r1"}
    assert len(seen) > 3  # random, not a fixed pick


def test_no_negative_available_gives_no_triplet() -> None:
    only = [Annotation("A_ori", "A_r1", "d", "v", "dlg", True)]
    assert build_triplets(only) == []
    assert len(build_triplets(only, extra_negatives=["X"])) == 1


def test_split_keeps_originals_apart(synthetic: list[Annotation]) -> None:
    train, val = split_originals(synthetic, val_fraction=0.34, seed=3)
    assert {a.original for a in train}.isdisjoint({a.original for a in val})
    assert len({a.original for a in val}) == 2
    assert len(train) + len(val) == len(synthetic)
