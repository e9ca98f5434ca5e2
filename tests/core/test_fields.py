"""flaudit.fields: one declaration per key, one rule and one message wherever the value comes from."""

from __future__ import annotations

import argparse
import pickle
from dataclasses import dataclass

import pytest

from flaudit.errors import FlauditError, ScenarioError
from flaudit.fields import FieldError, build, check, check_value, describe, flag, flag_type, spec


@dataclass(frozen=True)
class Toy:
    count: int = spec(1, ge=1, doc="how many")
    share: float = spec(0.5, gt=0.0, lt=1.0, doc="a share")
    ratio: float = spec(0.0, ge=0.0, le=1.0)
    mode: str = spec("mean", choices=("mean", "median"), doc="how to pool")
    verbose: bool = spec(False)
    limit: int | None = spec(None, ge=0)
    picks: tuple[int, ...] = spec((), ge=0, doc="chosen indices")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class Needs:
    name: str = spec(doc="who")
    size: int = spec(2, le=10)

    def __post_init__(self) -> None:
        check(self)


def message(**values: object) -> str:
    with pytest.raises(FieldError) as err:
        Toy(**values)  # type: ignore[arg-type]
    return str(err.value)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"count": 0}, "Toy.count: 0 is out of range; allowed: int in [1, inf) (default 1) - how many"),
        ({"share": 0.0}, "Toy.share: 0.0 is out of range; allowed: float in (0, 1) (default 0.5) - a share"),
        ({"share": 1}, "Toy.share: 1 is out of range; allowed: float in (0, 1) (default 0.5) - a share"),
        ({"ratio": 1.5}, "Toy.ratio: 1.5 is out of range; allowed: float in [0, 1] (default 0.0)"),
        ({"ratio": -0.1}, "Toy.ratio: -0.1 is out of range; allowed: float in [0, 1] (default 0.0)"),
        ({"limit": -1}, "Toy.limit: -1 is out of range; allowed: int in [0, inf) or null (default null)"),
        ({"picks": (1, -1)}, "Toy.picks[1]: -1 is out of range; allowed: list of int in [0, inf) (default []) - chosen indices"),
    ],
)
def test_ranges_open_and_closed(values: dict, expected: str) -> None:
    assert message(**values) == expected


def test_interval_ends_are_allowed_when_closed() -> None:
    toy = Toy(count=1, ratio=0.0, share=0.999, limit=0, picks=(0,))
    assert (toy.count, toy.ratio, toy.limit) == (1, 0.0, 0)
    assert Toy(ratio=1.0).ratio == 1.0


def test_choices_with_a_suggestion() -> None:
    assert message(mode="meen") == "Toy.mode: 'meen' is not allowed (did you mean 'mean'?); allowed: one of 'mean', 'median' (default 'mean') - how to pool"
    assert message(mode="sum") == "Toy.mode: 'sum' is not allowed; allowed: one of 'mean', 'median' (default 'mean') - how to pool"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"verbose": 1}, "Toy.verbose: expected true or false, got 1; allowed: true or false (default false)"),
        ({"count": True}, "Toy.count: expected an integer, got true; allowed: int in [1, inf) (default 1) - how many"),
        ({"count": 2.0}, "Toy.count: expected an integer, got 2.0; allowed: int in [1, inf) (default 1) - how many"),
        ({"ratio": True}, "Toy.ratio: expected a number, got true; allowed: float in [0, 1] (default 0.0)"),
        ({"ratio": "0.5"}, "Toy.ratio: expected a number, got '0.5'; allowed: float in [0, 1] (default 0.0)"),
        ({"ratio": float("nan")}, "Toy.ratio: nan is not a finite number; allowed: float in [0, 1] (default 0.0)"),
        ({"mode": 3}, "Toy.mode: expected a string, got 3; allowed: one of 'mean', 'median' (default 'mean') - how to pool"),
        ({"picks": 3}, "Toy.picks: expected a list, got int; allowed: list of int in [0, inf) (default []) - chosen indices"),
    ],
)
def test_types_bool_is_not_int(values: dict, expected: str) -> None:
    assert message(**values) == expected


def test_int_becomes_float_and_list_becomes_tuple() -> None:
    toy = Toy(ratio=1, picks=[2, 3])  # type: ignore[arg-type]
    assert toy.ratio == 1.0 and type(toy.ratio) is float
    assert toy.picks == (2, 3) and isinstance(toy.picks, tuple)
    assert check_value(Toy, "ratio", 0) == 0.0 and type(check_value(Toy, "ratio", 0)) is float


def test_build_names_unknown_and_missing_keys_and_the_owner() -> None:
    with pytest.raises(FieldError) as err:
        build(Toy, {"count": 2, "cuont": 3}, owner="section")
    assert str(err.value) == "section.cuont: unknown key (did you mean 'count'?); allowed here: count, share, ratio, mode, verbose, limit, picks"
    with pytest.raises(FieldError) as err:
        build(Needs, {"size": 3}, owner="")
    assert str(err.value) == "name: required key is missing; allowed: str - who"
    with pytest.raises(FieldError) as err:
        build(Needs, {"name": "x", "size": 11}, owner="items[2]")
    assert str(err.value) == "items[2].size: 11 is out of range; allowed: int in (-inf, 10] (default 2)"
    assert (err.value.owner, err.value.key) == ("items[2]", "size")
    assert build(Toy, {"count": 3}, owner="x") == Toy(count=3)


def test_field_error_is_a_scenario_error_and_pickles() -> None:
    err = FieldError("attack", "params.lr", "-1 is out of range")
    assert isinstance(err, ScenarioError) and isinstance(err, FlauditError)
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), str(again), again.key) == (FieldError, "attack.params.lr: -1 is out of range", "params.lr")
    assert str(err.within("", "x")) == "x.params.lr: -1 is out of range"


def test_describe_for_help_texts() -> None:
    assert describe(Toy, "share") == "float in (0, 1) (default 0.5) - a share"
    assert describe(Toy, "limit") == "int in [0, inf) or null (default null)"


def test_one_lower_and_one_upper_bound() -> None:
    with pytest.raises(ValueError, match="at most one lower bound"):
        spec(1, ge=0, gt=0)


def test_flag_type_parses_and_checks_with_the_same_rule() -> None:
    count = flag_type(Toy, "count")
    assert count("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match=r"^0 is out of range; allowed: int in \[1, inf\) - how many$"):
        count("0")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^expected an integer, got 'x'; allowed: int in \[1, inf\) - how many$"):
        count("x")
    assert flag_type(Toy, "ratio")("1") == 1.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"^nan is not a finite number"):
        flag_type(Toy, "ratio")("nan")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^'sum' is not allowed; allowed: one of 'mean', 'median' - how to pool$"):
        flag_type(Toy, "mode")("sum")
    # One element of a tuple field; a None-able field takes its type on the command line.
    assert flag_type(Toy, "picks")("4") == 4 and flag_type(Toy, "limit")("0") == 0


def test_flag_is_one_clean_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="toy")
    parser.add_argument("--count", **flag(Toy, "count", default=None))
    assert parser.parse_args(["--count", "5"]).count == 5
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--count", "-1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith("toy: error: argument --count: -1 is out of range; allowed: int in [1, inf) - how many\n")
    assert "how many (int in [1, inf))" in " ".join(parser.format_help().split())
