"""People's answers, one row each, in a SQLite database beside the images they judge.

Durable as given: every answer is its own transaction, committed (WAL, synchronous=FULL)
before the page is told it is stored, so a server killed mid-sitting loses nothing that was
acknowledged. `UNIQUE (annotator, item)` makes a double submission (a double click, a retried
request, a second tab) one answer, never two; a person's rows are changed only by that
person's own undo.

Leases spread the work: the item put in front of a person is leased to them for a while, so
that with `--annotators 1` two people at once are shown different images. A lease is taken in
a write transaction that first counts the item's answers and the other people's live leases,
so two people never both take an item's last place.

Each operation opens its own connection: the web server answers from a pool of threads, and a
connection per operation needs no locking of ours (SQLite serialises the writers; readers see
the last commit).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from flaudit.errors import FlauditError

#: The database's file name (in the run directory's `annotations/`, which the manifest leaves out).
DATABASE = "answers.sqlite"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator TEXT NOT NULL,
    item TEXT NOT NULL,
    choice TEXT NOT NULL,
    latency_ms INTEGER NOT NULL,
    time TEXT NOT NULL,
    UNIQUE (annotator, item)
);
CREATE TABLE IF NOT EXISTS leases (
    item TEXT NOT NULL,
    annotator TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (item, annotator)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Answer:
    """One stored answer.

    Args:
        annotator: the person's id.
        item: the item's id (`semsim.annotate.items.Item.id`).
        choice: what they answered (a class index, `unrecognisable`, `same`, `different`, `cant_tell`).
        latency_ms: milliseconds from the image appearing to the answer.
        time: when it was stored, ISO 8601 UTC with microseconds (so times sort as text).
    """

    annotator: str
    item: str
    choice: str
    latency_ms: int
    time: str


@dataclass(frozen=True)
class PersonView:
    """What one person's next item depends on, read in one snapshot.

    Args:
        mine: the items this person answered.
        answers: answers per item, everyone's.
        others_leases: live leases per item, other people's.
        my_leases: this person's live leases on items they have not answered, newest first.
    """

    mine: frozenset[str]
    answers: Counter[str]
    others_leases: Counter[str]
    my_leases: tuple[str, ...]


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AnswerStore:
    """The answers of one run directory (`path`: the SQLite file, created with its folder on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            found = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if found is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(found[0]) != SCHEMA_VERSION:
                raise FlauditError(f"{self.path}: answers database schema {found[0]}, this flaudit reads {SCHEMA_VERSION}; "
                                   "use the flaudit version that wrote it, or move the file away")

    def __repr__(self) -> str:
        return f"AnswerStore({str(self.path)!r})"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as err:
            raise FlauditError(f"{self.path}: cannot open the answers database ({err})") from None
        try:
            db.execute("PRAGMA synchronous=FULL")
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (BEGIN IMMEDIATE): what it reads cannot change before it commits."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add(self, annotator: str, item: str, choice: str, latency_ms: int) -> Answer | None:
        """Store an answer; None when this person already answered the item (nothing changes)."""
        answer = Answer(annotator, item, choice, latency_ms, now_utc())
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO answers (annotator, item, choice, latency_ms, time) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (annotator, item) DO NOTHING",
                (answer.annotator, answer.item, answer.choice, answer.latency_ms, answer.time),
            )
            db.execute("DELETE FROM leases WHERE item = ? AND annotator = ?", (item, annotator))
        return answer if cursor.rowcount == 1 else None

    def latest(self, annotator: str) -> Answer | None:
        """This person's most recent answer here."""
        with self._connect() as db:
            row = db.execute("SELECT annotator, item, choice, latency_ms, time FROM answers WHERE annotator = ? "
                             "ORDER BY id DESC LIMIT 1", (annotator,)).fetchone()
        return Answer(*row) if row else None

    def remove(self, answer: Answer, *, lease_until: float) -> bool:
        """Undo: delete exactly this answer of its annotator (False when it is no longer there) and
        lease the item back to them, so it is the next one they see."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM answers WHERE annotator = ? AND item = ? AND time = ?",
                                (answer.annotator, answer.item, answer.time))
            if cursor.rowcount:
                db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (answer.item, answer.annotator, lease_until))
        return cursor.rowcount == 1

    def answers(self) -> list[Answer]:
        """Every answer, in the order given."""
        with self._connect() as db:
            rows = db.execute("SELECT annotator, item, choice, latency_ms, time FROM answers ORDER BY id").fetchall()
        return [Answer(*row) for row in rows]

    def view(self, annotator: str, *, now: float) -> PersonView:
        """One consistent read of what `annotator`'s next item depends on."""
        with self._connect() as db:
            db.execute("BEGIN")
            mine = frozenset(r[0] for r in db.execute("SELECT item FROM answers WHERE annotator = ?", (annotator,)))
            answers = Counter(dict(db.execute("SELECT item, COUNT(*) FROM answers GROUP BY item").fetchall()))
            others = Counter(dict(db.execute("SELECT item, COUNT(*) FROM leases WHERE annotator != ? AND expires > ? GROUP BY item",
                                             (annotator, now)).fetchall()))
            leased = tuple(r[0] for r in db.execute("SELECT item FROM leases WHERE annotator = ? AND expires > ? ORDER BY expires DESC",
                                                    (annotator, now)) if r[0] not in mine)
            db.execute("COMMIT")
        return PersonView(mine, answers, others, leased)

    def claim(self, annotator: str, item: str, *, capacity: int, now: float, until: float) -> bool:
        """Lease `item` to `annotator` unless they answered it or it already has `capacity` answers
        and other people's live leases together."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM answers WHERE annotator = ? AND item = ?", (annotator, item)).fetchone():
                return False
            taken = db.execute("SELECT (SELECT COUNT(*) FROM answers WHERE item = ?) + "
                               "(SELECT COUNT(*) FROM leases WHERE item = ? AND annotator != ? AND expires > ?)",
                               (item, item, annotator, now)).fetchone()[0]
            if taken >= capacity:
                return False
            db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (item, annotator, until))
        return True
