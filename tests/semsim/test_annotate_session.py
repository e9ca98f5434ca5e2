"""The annotation sitting: answers stored once and durably, resumed after a restart, spread over
people with leases, undone only by their author; refused requests store nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

from flaudit.errors import FlauditError
from semsim.annotate.items import Choice, Item, Source, shortcut_keys
from semsim.annotate.session import LEASE_SECONDS, AnswerError, Session
from semsim.annotate.store import AnswerStore
from semsim.data import save_image

DIGITS = tuple(str(d) for d in range(10))


def make_source(root: Path, *, items: int = 4, mode: str = "class", names: tuple[str, ...] = DIGITS) -> Source:
    """`items` PNG pairs of 8x8 grey images in `root`, as a run's items."""
    g = torch.Generator().manual_seed(len(str(root)))
    made = []
    for i in range(items):
        label = i % len(names)
        ori = save_image(root / f"{i}_{label}_ori.png", torch.rand(1, 8, 8, generator=g))
        rec = save_image(root / f"{i}_{label}_rec.png", torch.rand(1, 8, 8, generator=g))
        candidates = tuple(range(len(names))) if mode == "class" else ()
        made.append(Item(f"{mode}:dlg:1:0:{i}:d{i}", ori, rec, "dlg", label, 100 + i, candidates, mode))  # type: ignore[arg-type]
    return Source(root, root / "annotations" / "answers.sqlite", "digits", root.name, names, tuple(made))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_stored_once_durably_and_a_restart_resumes(tmp_path: Path) -> None:
    source = make_source(tmp_path / "run")
    session = Session([source], capacity=2)
    first = session.next("alice")
    stored = session.submit("alice", first.id, "3", 1250)
    assert (stored.annotator, stored.item, stored.choice, stored.latency_ms) == ("alice", first.item.id, "3", 1250)
    with pytest.raises(AnswerError, match="already answered") as refused:
        session.submit("alice", first.id, "4", 10)
    assert refused.value.status == 409

    with sqlite3.connect(source.database) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = Session([source], capacity=2)  # a restarted server
    rows = AnswerStore(source.database).answers()
    assert [(a.annotator, a.item, a.choice, a.latency_ms) for a in rows] == [("alice", first.item.id, "3", 1250)]
    assert rows[0].time.endswith("Z")
    resumed = again.next("alice")
    assert resumed is not None and resumed.id != first.id
    assert again.progress("alice").done == 1 and again.progress("alice").total == 4
    assert again.next("bob").id == first.id  # the same order for everyone, and first still needs a second person


def test_with_one_person_per_item_two_people_are_shown_different_items_until_a_lease_expires(tmp_path: Path) -> None:
    clock = Clock()
    session = Session([make_source(tmp_path / "run", items=2)], capacity=1, clock=clock)
    alice, bob = session.next("alice"), session.next("bob")
    assert alice.id != bob.id
    assert session.next("alice").id == alice.id  # a reload shows the same image
    assert session.next("carol") is None and session.progress("carol").total == 0
    session.submit("bob", bob.id, "0", 900)
    clock.now += LEASE_SECONDS + 1  # alice walked away
    assert session.next("carol").id == alice.id


def test_every_item_gets_exactly_its_number_of_people(tmp_path: Path) -> None:
    sources = [make_source(tmp_path / "a", items=5), make_source(tmp_path / "b", items=4, mode="pair")]
    session = Session(sources, capacity=2)
    people = ["alice", "bob", "carol"]
    active = list(people)
    while active:
        for person in list(active):
            shown = session.next(person)
            if shown is None:
                active.remove(person)
                continue
            session.submit(person, shown.id, shown.item.choices(DIGITS)[0].value, 500)
    counts: dict[str, int] = {}
    for source in sources:
        for answer in AnswerStore(source.database).answers():
            counts[answer.item] = counts.get(answer.item, 0) + 1
    assert sorted(counts.values()) == [2] * 9
    assert session.progress("alice").complete == 9


def test_undo_removes_only_the_persons_own_last_answer_and_shows_that_item_again(tmp_path: Path) -> None:
    source = make_source(tmp_path / "run", items=3)
    session = Session([source], capacity=2)
    first = session.next("alice")
    session.submit("alice", first.id, "1", 100)
    session.submit("bob", first.id, "2", 100)
    second = session.next("alice")
    session.submit("alice", second.id, "unrecognisable", 100)
    assert session.undo("alice").id == second.id
    assert session.next("alice").id == second.id
    assert session.undo("alice").id == first.id
    assert session.undo("alice") is None
    left = [(a.annotator, a.item, a.choice) for a in AnswerStore(source.database).answers()]
    assert left == [("bob", first.item.id, "2")]


@pytest.mark.parametrize(
    ("annotator", "item", "choice", "latency", "status", "message"),
    [
        ("alice", "nope:1", "3", 10, 404, "no item 'nope:1'"),
        ("alice", None, "3", 10, 422, "choice '11' is not offered"),
        ("alice", None, "same", 10, 422, "allowed: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, unrecognisable"),
        ("alice", None, "3", -1, 422, "latency_ms -1"),
        ("alice", None, "3", "fast", 422, "latency_ms 'fast'"),
        ("alice", None, "3", True, 422, "latency_ms True"),
        ("oracle", None, "3", 10, 422, "reserved for machine labels"),
        ("a b", None, "3", 10, 422, "a name of 1 to 64 letters"),
        ("", None, "3", 10, 422, "a name of 1 to 64 letters"),
    ],
)
def test_a_refused_answer_stores_nothing(tmp_path: Path, annotator, item, choice, latency, status, message) -> None:
    source = make_source(tmp_path / "run")
    session = Session([source], capacity=1)
    shown = session.next("alice")
    if message.startswith("choice '11'"):
        choice = "11"
    with pytest.raises(AnswerError, match=message) as refused:
        session.submit(annotator, item if item is not None else shown.id, choice, latency)
    assert refused.value.status == status
    assert AnswerStore(source.database).answers() == []


def test_pair_mode_answers_and_what_they_mean(tmp_path: Path) -> None:
    item = make_source(tmp_path / "run", mode="pair").items[0]
    assert [c.value for c in item.choices()] == ["same", "different", "cant_tell"]
    assert item.recognised("same") and not item.recognised("different") and not item.recognised("cant_tell")
    assert not item.allows("3")
    digit = make_source(tmp_path / "digits").items[2]
    assert digit.recognised("2") and not digit.recognised("3") and not digit.recognised("unrecognisable")


def test_shortcut_keys() -> None:
    digits = make_source_choices(DIGITS)
    assert shortcut_keys(digits) == (*DIGITS, "u")
    named = make_source_choices(("cat", "dog", "fish"))
    assert shortcut_keys(named) == ("1", "2", "3", "u")
    upper = make_source_choices(tuple("abcdefghijklmnopqrsu"))  # 'u' among the names: positions instead
    assert shortcut_keys(upper)[-1] == "u" and shortcut_keys(upper)[:3] == ("1", "2", "3")
    assert shortcut_keys((Choice("same", "same"), Choice("different", "different"), Choice("cant_tell", "can't tell"))) == ("s", "d", "c")


def make_source_choices(names: tuple[str, ...]) -> tuple[Choice, ...]:
    item = Item("class:x", Path("o"), Path("r"), "dlg", 0, 0, tuple(range(len(names))), "class")
    return item.choices(names)


def test_capacity_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FlauditError, match="at least 1 person"):
        Session([make_source(tmp_path / "run")], capacity=0)
