"""From stored answers to SemSim's annotation records, and how far people agree with each other
and with the oracle (`flaudit annotate export` and `stats`)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semsim.annotate.agreement import (
    cohen_kappa,
    fleiss_kappa,
    majority,
    percent_agreement,
)
from semsim.annotate.items import Item, Source, item_mode
from semsim.annotate.store import Answer, AnswerStore
from semsim.data import Annotation

if TYPE_CHECKING:
    from semsim.oracle import Oracle

MAJORITY = "majority"


@dataclass(frozen=True)
class Judged:
    """One stored answer and the item it judges."""

    source: Source
    item: Item
    answer: Answer

    @property
    def key(self) -> tuple[Path, str]:
        return self.source.root, self.item.id

    @property
    def recognised(self) -> bool:
        return self.item.recognised(self.answer.choice)


def collect(sources: Sequence[Source]) -> tuple[list[Judged], list[str]]:
    """Every answer of the runs with its item, and a note per run whose database holds answers to
    images no longer in the run (re-attacked or re-audited since), which are left out.

    Sources of one run (one per mode) share its database, which is read once.
    """
    by_database: dict[Path, list[Source]] = defaultdict(list)
    for source in sources:
        by_database[source.database].append(source)
    judged: list[Judged] = []
    notes: list[str] = []
    for database, group in by_database.items():
        items = {item.id: (source, item) for source in group for item in source.items}
        stale: dict[str, int] = defaultdict(int)
        for answer in AnswerStore(database).answers():
            if answer.item in items:
                source, item = items[answer.item]
                judged.append(Judged(source, item, answer))
            else:
                stale[item_mode(answer.item)] += 1
        for mode, count in sorted(stale.items()):
            notes.append(f"{database}: {count} {mode}-mode answer(s) judge images no longer in {group[0].root} "
                         "(re-attacked or re-audited since, or not asked for here); left out")
    return judged, notes


def annotations(judged: Sequence[Judged]) -> list[Annotation]:
    """SemSim's records: one per answer, the person's id as annotator, in the order given."""
    return [j.source.annotation(j.item, annotator=j.answer.annotator, recognised=j.recognised, time=j.answer.time)
            for j in sorted(judged, key=lambda j: j.answer.time)]


def majority_annotations(judged: Sequence[Judged]) -> tuple[list[Annotation], int]:
    """One record per item, the majority of its people's recognised/not (annotator `majority`,
    time of its last answer); items whose people are split evenly are left out and counted."""
    groups: dict[tuple[Path, str], list[Judged]] = defaultdict(list)
    for j in judged:
        groups[j.key].append(j)
    records, ties = [], 0
    for group in groups.values():
        label = majority([j.recognised for j in group])
        if label is None:
            ties += 1
            continue
        last = max(j.answer.time for j in group)
        records.append(group[0].source.annotation(group[0].item, annotator=MAJORITY, recognised=bool(label), time=last))
    return records, ties


def oracle_judgements(items: Sequence[Item], oracle: Oracle) -> dict[str, bool]:
    """The oracle's recognised/not for each item, judged on the very PNGs people saw, with the
    candidates keyed by dataset index as in scoring (`Oracle.recognised`)."""
    import torch

    from semsim.data import load_image

    if not items:
        return {}
    channels = oracle.config.in_channels
    recs = torch.stack([load_image(item.reconstruction, channels=channels) for item in items])
    oris = torch.stack([load_image(item.original, channels=channels) for item in items])
    labels = torch.tensor([item.label for item in items], dtype=torch.int64)
    keys = torch.tensor([item.key for item in items], dtype=torch.int64)
    judged = oracle.recognised(recs, labels, originals01=oris, keys=keys)
    return {item.id: bool(value) for item, value in zip(items, judged.tolist(), strict=True)}


def agreement_stats(judged: Sequence[Judged], oracle: Mapping[tuple[Path, str], bool] | None = None) -> dict[str, Any]:
    """Per mode: counts per person, agreement between people, and between people and the oracle.

    Args:
        judged: the answers (`collect`).
        oracle: the oracle's recognised/not per (run, item id), or None without an oracle.

    Returns:
        {mode: {"answers", "items", "runs", "annotators": {name: {"answers", "recognised", "median_latency_s"}},
        "people": {"items", "recognised": {"percent", "fleiss_kappa"}, "choice": {...}, "pairs": [...],
        "majority_items", "ties"}, "oracle": [{"who", "items", "percent", "cohen_kappa"}] or None}}.
        Kappas are NaN where they are undefined (fewer than two judgements, one category throughout).
    """
    stats: dict[str, Any] = {}
    for mode in sorted({j.item.mode for j in judged}):
        rows = [j for j in judged if j.item.mode == mode]
        by_person: dict[str, dict[tuple[Path, str], Judged]] = defaultdict(dict)
        by_item: dict[tuple[Path, str], list[Judged]] = defaultdict(list)
        for j in rows:
            by_person[j.answer.annotator][j.key] = j
            by_item[j.key].append(j)
        people = {
            name: {"answers": len(mine), "recognised": sum(j.recognised for j in mine.values()) / len(mine),
                   "median_latency_s": statistics.median(j.answer.latency_ms for j in mine.values()) / 1000}
            for name, mine in sorted(by_person.items())
        }
        shared = {key: group for key, group in by_item.items() if len(group) >= 2}
        recognised = {f"{key}": [j.recognised for j in group] for key, group in shared.items()}
        choices = {f"{key}": [j.answer.choice for j in group] for key, group in shared.items()}
        pairs = []
        for first, second in combinations(sorted(by_person), 2):
            common = sorted(set(by_person[first]) & set(by_person[second]))
            if common:
                a = [by_person[first][k].recognised for k in common]
                b = [by_person[second][k].recognised for k in common]
                pairs.append({"who": [first, second], "items": len(common), "percent": _share(a, b), "cohen_kappa": cohen_kappa(a, b)})
        majorities = {key: majority([j.recognised for j in group]) for key, group in by_item.items()}
        against_oracle = None
        if oracle is not None:
            against_oracle = []
            judges = {name: {k: j.recognised for k, j in mine.items()} for name, mine in sorted(by_person.items())}
            judges[MAJORITY] = {k: bool(v) for k, v in majorities.items() if v is not None}
            for name, labels in judges.items():
                common = sorted(k for k in labels if k in oracle)
                a, b = [labels[k] for k in common], [oracle[k] for k in common]
                against_oracle.append({"who": name, "items": len(common), "percent": _share(a, b), "cohen_kappa": cohen_kappa(a, b)})
        stats[mode] = {
            "answers": len(rows), "items": len(by_item), "runs": len({j.source.root for j in rows}), "annotators": people,
            "people": {
                "items": len(shared),
                "recognised": {"percent": percent_agreement(recognised), "fleiss_kappa": fleiss_kappa(recognised)},
                "choice": {"percent": percent_agreement(choices), "fleiss_kappa": fleiss_kappa(choices)},
                "pairs": pairs,
                "majority_items": sum(v is not None for v in majorities.values()),
                "ties": sum(v is None for v in majorities.values()),
            },
            "oracle": against_oracle,
        }
    return stats


def format_stats(stats: Mapping[str, Any]) -> str:
    """`agreement_stats` as the text `flaudit annotate stats` prints."""
    if not stats:
        return "no answers yet"
    lines: list[str] = []
    for mode, s in stats.items():
        question = "pick the category" if mode == "class" else "same / different / can't tell"
        heading = (f"{mode} mode ({question}): {s['answers']} answers by {len(s['annotators'])} people on {s['items']} items "
                   f"of {s['runs']} run(s)")
        lines += [heading, "", "  annotator              answers  recognised  median s"]
        lines += [f"  {name:<22} {p['answers']:>7}  {p['recognised']:>10.2f}  {p['median_latency_s']:>8.1f}"
                  for name, p in s["annotators"].items()]
        people = s["people"]
        lines += ["", f"  between people ({people['items']} items judged by two or more):"]
        if people["items"]:
            lines.append(f"    recognised/not: agreement {_fmt(people['recognised']['percent'])}, "
                         f"Fleiss' kappa {_fmt(people['recognised']['fleiss_kappa'])}")
            lines.append(f"    answer given:   agreement {_fmt(people['choice']['percent'])}, "
                         f"Fleiss' kappa {_fmt(people['choice']['fleiss_kappa'])}")
            lines += [f"    {' ~ '.join(p['who'])}: {p['items']} items, agreement {_fmt(p['percent'])}, "
                      f"Cohen's kappa {_fmt(p['cohen_kappa'])}" for p in people["pairs"]]
        lines.append(f"    majority label on {people['majority_items']} items, {people['ties']} tied (left out of --majority)")
        lines += ["", "  people vs the oracle (recognised/not):"]
        if s["oracle"] is None:
            lines.append("    not computed (no oracle)")
        else:
            lines += [f"    {o['who']:<22} {o['items']:>5} items, agreement {_fmt(o['percent'])}, Cohen's kappa {_fmt(o['cohen_kappa'])}"
                      for o in s["oracle"]]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _share(a: Sequence[bool], b: Sequence[bool]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a) if a else math.nan


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"
