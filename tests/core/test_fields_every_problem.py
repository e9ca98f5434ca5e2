"""flaudit.fields: every problem of a config at once, cost limits with an explicit override, text
patterns, non-empty lists, and messages that stay one short line whatever the value."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import pytest

from flaudit.errors import ScenarioError
from flaudit.fields import (
    FieldError,
    Pattern,
    build,
    check,
    combine,
    enforcing_limits,
    limited_keys,
    raised_limits,
    show,
    spec,
)

WORD = Pattern(r"[a-z]+", "lower-case letters")


@dataclass(frozen=True)
class Job:
    size: int = spec(1, ge=1, limit=100, doc="items")
    share: float = spec(0.5, ge=0.0, le=1.0)
    word: str = spec("x", pattern=WORD, doc="a word")
    picks: tuple[int, ...] | None = spec(None, ge=0, nonempty=True, doc="chosen")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class Outer:
    job: Job = field(default_factory=Job)
    steps: int = spec(1, ge=1, limit=10)

    def __post_init__(self) -> None:
        check(self)


def test_check_reports_every_bad_field_in_declaration_order() -> None:
    with pytest.raises(FieldError) as err:
        Job(size=0, share=2.0, word="X")
    assert [e.key for e in err.value.errors] == ["size", "share", "word"]
    assert str(err.value).splitlines() == [
        "Job.size: 0 is out of range; allowed: int in [1, inf) (default 1) - items",
        "Job.share: 2.0 is out of range; allowed: float in [0, 1] (default 0.5)",
        "Job.word: 'X' is not allowed; allowed: lower-case letters (default 'x') - a word",
    ]


def test_build_reports_unknown_missing_and_bad_keys_in_file_order() -> None:
    @dataclass(frozen=True)
    class Needs:
        name: str = spec(doc="who")
        size: int = spec(2, le=10)

        def __post_init__(self) -> None:
            check(self)

    with pytest.raises(FieldError) as err:
        build(Needs, {"size": 11, "colour": "red"}, owner="part")
    assert [(e.owner, e.key) for e in err.value.errors] == [("part", "size"), ("part", "colour"), ("part", "name")]
    # A misspelt key is reported once, not also as missing.
    with pytest.raises(FieldError) as err:
        build(Needs, {"nmae": "x"}, owner="")
    assert [e.key for e in err.value.errors] == ["nmae"]


def test_nested_sections_and_their_siblings_are_all_reported() -> None:
    def convert(tp, value, where):  # type: ignore[no-untyped-def]
        return build(tp, value, owner=where) if tp is Job else value

    with pytest.raises(FieldError) as err:
        build(Outer, {"job": {"size": 0, "word": "A"}, "steps": 0}, owner="", convert=convert)
    assert [str(e) for e in err.value.errors] == [
        "job.size: 0 is out of range; allowed: int in [1, inf) (default 1) - items",
        "job.word: 'A' is not allowed; allowed: lower-case letters (default 'x') - a word",
        "steps: 0 is out of range; allowed: int in [1, inf) (default 1)",
    ]


class Special(FieldError):
    """A subclass, as attacks.params.AttackParameterError."""


def test_a_combined_error_keeps_its_class_moves_and_pickles_whole() -> None:
    both = combine([Special("a", "x", "bad"), FieldError("b", "y", "worse")])
    assert isinstance(both, Special) and isinstance(both, ScenarioError)
    assert str(both.within("top", "sec")) == "top.sec.x: bad\ntop.sec.y: worse"
    again = pickle.loads(pickle.dumps(both))
    assert type(again) is Special and str(again) == str(both) and len(again.errors) == 2


def test_cost_limits_hold_only_while_enforced_and_name_the_override() -> None:
    assert Job(size=1000).size == 1000  # Python code runs what it asks for
    with enforcing_limits(), pytest.raises(FieldError) as err:
        Job(size=1000)
    assert str(err.value) == (
        "Job.size: 1000 is above the cost limit 100: it would exhaust memory or run for days; to run it on purpose, "
        "set `limits: {size: 1000}` at the top level of the scenario; allowed: int in [1, inf) (default 1) - items"
    )
    with enforcing_limits({"size": 5000}):
        assert Job(size=1000).size == 1000 and raised_limits() == {"size": 5000}
        with pytest.raises(FieldError, match=r"6000 is above its raised limit 5000 \(limits\.size\)"):
            Job(size=6000)
    assert raised_limits() == {}
    assert limited_keys(Outer) == {"steps": 10, "size": 100}


def test_an_empty_list_is_refused_and_null_stays_allowed() -> None:
    with pytest.raises(FieldError, match=r"^Job\.picks: \[\] is empty; list at least one value; allowed: list of int in \[0, inf\) or null"):
        Job(picks=())
    assert Job(picks=None).picks is None and Job(picks=[0]).picks == (0,)


def test_messages_stay_short_whatever_the_value() -> None:
    assert show("x" * 10_000).endswith("...") and len(show("x" * 10_000)) == 80
    assert show(list(range(1000))) == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, ...]"
    huge = 1 << 100_000  # repr refuses it (more than 4300 digits)
    assert show(huge) == "an integer of about 30103 digits"
    with pytest.raises(FieldError, match="^Job.share: an integer of about 30103 digits is not a finite number"):
        Job(share=huge)  # type: ignore[arg-type]
    with enforcing_limits(), pytest.raises(FieldError, match=r"^Job\.size: an integer of about 30103 digits is above the cost limit 100") as err:
        Job(size=huge)
    assert len(str(err.value)) < 400
