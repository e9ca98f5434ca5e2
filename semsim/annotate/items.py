"""What a person is shown and may answer: items, their choices, and what an answer means.

An item is one matched pair of the audit, `{i}_{label}_ori.png` / `_rec.png`. Its id names the
question (`mode`), where the pair comes from and a digest of both images, so an answer always
refers to the images that were judged: a re-audit that rewrites the pair makes a new item, and
the old answers are reported as stale rather than silently moved onto other images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from semsim.data import Annotation

Mode = Literal["class", "pair"]
MODES: tuple[Mode, ...] = ("class", "pair")

#: Class mode's "I cannot tell which category this is": never the true class.
UNRECOGNISABLE = "unrecognisable"
#: Pair mode's answers, in the order the page shows them.
PAIR_CHOICES = ("same", "different", "cant_tell")
_PAIR_LABELS = {"same": "same", "different": "different", "cant_tell": "can't tell"}

#: A person's id: what `Annotation.annotator` records. `oracle` and `release` name the machine
#: annotator and the SemSim authors' labels, so a person may not take them.
ANNOTATOR_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
RESERVED_ANNOTATORS = ("oracle", "release", "majority")


@dataclass(frozen=True)
class Choice:
    """One answer a person may give: the value stored and the words on its button."""

    value: str
    label: str


@dataclass(frozen=True)
class Item:
    """One reconstruction to judge.

    Args:
        id: unique within its run: `MODE:ATTACK:ROUND:CLIENT:POSITION:DIGEST` (digest of both images).
        original: the original's PNG (shown in pair mode only: in class mode it would give the answer).
        reconstruction: the reconstruction's PNG.
        attack: the attack that made it.
        label: the original's true class (identity in identity datasets).
        key: the image's dataset index: the key of the candidate draw, as the oracle uses it.
        candidates: class mode: the classes offered (the true one among them), ascending; () in pair mode.
        mode: the question asked.
    """

    id: str
    original: Path
    reconstruction: Path
    attack: str
    label: int
    key: int
    candidates: tuple[int, ...]
    mode: Mode

    def choices(self, class_names: tuple[str, ...] = ()) -> tuple[Choice, ...]:
        """The answers offered, in the order shown: the candidates then "unrecognisable", or same/different/can't tell."""
        if self.mode == "pair":
            return tuple(Choice(value, _PAIR_LABELS[value]) for value in PAIR_CHOICES)
        named = [Choice(str(c), class_names[c] if c < len(class_names) else f"class {c}") for c in self.candidates]
        return (*named, Choice(UNRECOGNISABLE, "unrecognisable"))

    def allows(self, choice: str) -> bool:
        """Whether `choice` is one of this item's answers."""
        if self.mode == "pair":
            return choice in PAIR_CHOICES
        return choice == UNRECOGNISABLE or choice in {str(c) for c in self.candidates}

    def recognised(self, choice: str) -> bool:
        """What an answer says for SemSim: the true class picked, or "same"; every other answer
        (a wrong class, unrecognisable, different, can't tell) means the image did not leak to this person."""
        return choice == "same" if self.mode == "pair" else choice == str(self.label)


@dataclass(frozen=True)
class Source:
    """The items of one run directory, and where their answers are kept.

    Args:
        root: the run directory.
        database: the SQLite file of its answers.
        dataset: the dataset name (`Annotation.dataset`).
        variant: the run's name (`Annotation.variant`).
        class_names: a name per class, for the buttons (() shows "class N").
        items: the items, in the run's order.
        problems: pairs left out, with why (missing or altered files), by path.
    """

    root: Path
    database: Path
    dataset: str
    variant: str
    class_names: tuple[str, ...]
    items: tuple[Item, ...]
    problems: tuple[str, ...] = ()

    def annotation(self, item: Item, *, annotator: str, recognised: bool, time: str = "") -> Annotation:
        """SemSim's record of one judgement of `item`."""
        return Annotation(
            original=str(item.original.resolve()), reconstruction=str(item.reconstruction.resolve()), dataset=self.dataset,
            variant=self.variant, attack=item.attack, recognisable=recognised, annotator=annotator, time=time,
            identity=item.mode == "pair",
        )


#: Keys for class-mode choices by position (two keyboard rows); `u` is always "unrecognisable".
_POSITION_KEYS = "1234567890abcdefghij"
_PAIR_KEYS = {"same": "s", "different": "d", "cant_tell": "c"}


def shortcut_keys(choices: tuple[Choice, ...]) -> tuple[str, ...]:
    """A key per choice: s/d/c in pair mode; in class mode the class names themselves when each is
    one distinct letter or digit (digits: press 7 for "7"), else 1-9, 0, a-j by position; u for unrecognisable."""
    if all(c.value in _PAIR_KEYS for c in choices):
        return tuple(_PAIR_KEYS[c.value] for c in choices)
    classes = [c for c in choices if c.value != UNRECOGNISABLE]
    names = [c.label.lower() for c in classes]
    own = all(len(n) == 1 and n.isalnum() and n.isascii() and n != "u" for n in names) and len(set(names)) == len(names)
    keys = iter(names if own else _POSITION_KEYS)
    return tuple("u" if c.value == UNRECOGNISABLE else next(keys) for c in choices)


def annotator_problem(name: object) -> str | None:
    """None when `name` may be a person's id, else what is wrong with it."""
    if not isinstance(name, str) or not ANNOTATOR_PATTERN.match(name):
        return "a name of 1 to 64 letters, digits and _ . @ - (starting with a letter or digit)"
    if name.lower() in RESERVED_ANNOTATORS:
        return f"{name!r} is reserved for machine labels ({', '.join(RESERVED_ANNOTATORS)}); pick a person's name"
    return None


def item_mode(item_id: str) -> str:
    """The question an item id was asked in (its first field)."""
    return item_id.split(":", 1)[0]
