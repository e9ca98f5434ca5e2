"""A sitting over one or more run directories: who sees which item next, answers, undo, progress.

Items are shown in one fixed shuffled order (a hash of the run and the item, so neighbouring
clients and rounds do not come in runs and a restart shows the same order); each person gets
the first item they have not answered that still needs people (`capacity`: answers plus other
people's live leases below it). State lives only in the run directories' databases, so a
restarted server resumes where each person stopped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flaudit.errors import FlauditError
from semsim.annotate.items import Item, Source, annotator_problem
from semsim.annotate.store import Answer, AnswerStore

#: How long an item shown to a person stays theirs before another person may be shown it instead.
LEASE_SECONDS = 600.0
#: The longest answer time stored (a person who left the page open overnight).
MAX_LATENCY_MS = 24 * 3600 * 1000


class AnswerError(FlauditError):
    """A request the sitting refuses; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Progress:
    """One person's progress: `done` answers of the `total` they can give now; `complete` items
    of `items` have all the answers they need."""

    done: int
    total: int
    complete: int
    items: int


@dataclass(frozen=True)
class Shown:
    """An item in front of a person: its sitting-wide id, the item, and the run it belongs to."""

    id: str
    item: Item
    source: Source


class Session:
    """The sitting: items of every run, each shown to `capacity` different people.

    Args:
        sources: the runs' items (`semsim.annotate.items.Source`).
        capacity: how many different people should judge each item (`--annotators`).
        clock: seconds since the epoch (tests move it to expire leases).
    """

    def __init__(self, sources: Sequence[Source], *, capacity: int, clock: Callable[[], float] = time.time) -> None:
        if capacity < 1:
            raise FlauditError(f"--annotators {capacity}: each item needs at least 1 person")
        self.sources = tuple(sources)
        self.capacity = capacity
        self.clock = clock
        self.stores = {source.root: AnswerStore(source.database) for source in self.sources}
        self.shown: dict[str, Shown] = {}
        for source in self.sources:
            tag = hashlib.sha256(str(source.root.resolve()).encode()).hexdigest()[:8]
            for item in source.items:
                self.shown[f"{tag}:{item.id}"] = Shown(f"{tag}:{item.id}", item, source)
        self.by_run = {(shown.source.root, shown.item.id): shown for shown in self.shown.values()}
        self.order = sorted(self.shown, key=lambda key: hashlib.sha256(key.encode()).digest())

    def _store(self, shown: Shown) -> AnswerStore:
        return self.stores[shown.source.root]

    def _views(self, annotator: str) -> dict:
        now = self.clock()
        return {root: store.view(annotator, now=now) for root, store in self.stores.items()}

    def next(self, annotator: str) -> Shown | None:
        """The item to show `annotator` now (leased to them), or None when nothing is left for them."""
        _check_annotator(annotator)
        views = self._views(annotator)
        now = self.clock()
        # An item already leased to this person comes back first (a reload, an undo), newest lease first.
        held = [(views[root].my_leases.index(item), self.by_run[(root, item)])
                for root in self.stores for item in views[root].my_leases if (root, item) in self.by_run]
        if held:
            return min(held, key=lambda pair: pair[0])[1]
        for key in self.order:
            shown = self.shown[key]
            view, item = views[shown.source.root], shown.item.id
            if item in view.mine or view.answers[item] + view.others_leases[item] >= self.capacity:
                continue
            if self._store(shown).claim(annotator, item, capacity=self.capacity, now=now, until=now + LEASE_SECONDS):
                return shown
        return None

    def submit(self, annotator: str, item_id: object, choice: object, latency_ms: object) -> Answer:
        """Validate and store one answer.

        Raises:
            AnswerError: unknown item (404), a choice the item does not offer or a bad latency or
                name (422), or this person already answered the item (409). Nothing is stored.
        """
        _check_annotator(annotator)
        shown = self.shown.get(item_id) if isinstance(item_id, str) else None
        if shown is None:
            raise AnswerError(f"no item {item_id!r} in this sitting", 404)
        if not isinstance(choice, str) or not shown.item.allows(choice):
            offered = ", ".join(c.value for c in shown.item.choices(shown.source.class_names))
            raise AnswerError(f"choice {choice!r} is not offered for this item; allowed: {offered}")
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, (int, float)) or not 0 <= latency_ms <= MAX_LATENCY_MS:
            raise AnswerError(f"latency_ms {latency_ms!r}: a number of milliseconds in [0, {MAX_LATENCY_MS}]")
        stored = self._store(shown).add(annotator, shown.item.id, choice, int(latency_ms))
        if stored is None:
            raise AnswerError(f"{annotator} already answered item {item_id}; undo it first to change the answer", 409)
        return stored

    def undo(self, annotator: str) -> Shown | None:
        """Delete `annotator`'s most recent answer (of any run); the item is theirs to answer again.
        None when they have no answer left."""
        _check_annotator(annotator)
        while True:
            latest = [(answer, root) for root, store in self.stores.items() if (answer := store.latest(annotator)) is not None]
            if not latest:
                return None
            answer, root = max(latest, key=lambda pair: pair[0].time)
            if self.stores[root].remove(answer, lease_until=self.clock() + LEASE_SECONDS):
                return self.by_run.get((root, answer.item))  # None: an answer to images no longer in the run
            # Removed meanwhile (a second tab undid it): look again.

    def progress(self, annotator: str) -> Progress:
        """`annotator`'s answers and what is still open to them, and the items complete overall."""
        views = self._views(annotator)
        done = total = complete = 0
        for shown in self.shown.values():
            view, item = views[shown.source.root], shown.item.id
            complete += view.answers[item] >= self.capacity
            if item in view.mine:
                done += 1
                total += 1
            elif view.answers[item] + view.others_leases[item] < self.capacity:
                total += 1
        return Progress(done, total, complete, len(self.shown))


def _check_annotator(annotator: object) -> None:
    problem = annotator_problem(annotator)
    if problem is not None:
        raise AnswerError(f"annotator {annotator!r}: {problem}")
