"""One way to declare a configuration key: its type, allowed values, default and one line of doc.

A config class is a frozen dataclass whose fields are declared with `spec` and whose
`__post_init__` calls `check`. The same rule then runs wherever a value comes from:

- built in Python: `check` (from `__post_init__`) raises `FieldError("Owner.key: ...")`;
- a YAML file: `build` constructs the class from a mapping (unknown keys, missing keys) and the
  loader prefixes the file and the key path (`fl_sim.scenario.parse_yaml_as`);
- a command-line flag: `flag_type` / `flag` make argparse's `type=`, so a bad value is argparse's
  one-line `error: argument --seed: ...` (exit status 2).

Every message has one form: `owner.key: <value> is out of range; allowed: float in (0, inf)
(default 0.1) - step size`. One error may carry several problems (`FieldError.errors`): `check`
and `build` report every bad key of a config at once, one line each.

Cost limits (`spec(limit=...)`) bound values that would exhaust memory or run for days. They are
enforced while a file is read (`enforcing_limits`, which the YAML loader wraps around a file with
its top-level `limits:`), so a file asks for a large run on purpose and says so; a config built in
Python runs what the code asks for. Torch-free, and it imports nothing of the other packages.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import functools
import math
import numbers
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from flaudit.errors import ScenarioError, clip
from flaudit.registry import closest

_METADATA_KEY = "flaudit.spec"


class FieldError(ScenarioError):
    """A configuration value breaks its field's rule.

    Args:
        owner: who holds the key: a class name, an attack name, or a key path such as `attack`
            (empty at the top level of a file).
        key: the key, relative to `owner` (`lr`, `rounds[1]`, `params.lr`).
        problem: what is wrong and what is allowed.
        others: more problems of the same config, reported with this one (see `combine`).
    """

    def __init__(self, owner: str, key: str, problem: str, others: Sequence[FieldError] = ()) -> None:
        self.owner, self.key, self.problem, self.others = owner, key, problem, tuple(others)
        super().__init__("\n".join([f"{join(owner, key)}: {problem}", *(str(o) for o in self.others)]))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (Ray moves errors between processes)
        return type(self), (self.owner, self.key, self.problem, self.others)

    @property
    def errors(self) -> tuple[FieldError, ...]:
        """Every problem, one error each (this one first)."""
        return (type(self)(self.owner, self.key, self.problem), *self.others)

    def within(self, owner: str, prefix: str = "") -> FieldError:
        """The same problems (and error class) seen from `owner`, the keys under `prefix`."""
        return type(self)(owner, join(prefix, self.key), self.problem, [o.within(owner, prefix) for o in self.others])


def combine(errors: Iterable[FieldError]) -> FieldError:
    """One error carrying every problem of `errors` (each may carry several); the first's class."""
    flat = [single for err in errors for single in err.errors]
    first = flat[0]
    return type(first)(first.owner, first.key, first.problem, flat[1:])


def join(path: str, key: str) -> str:
    """`path.key`, or `key` at the top level (`key` may start with an index: `[1]`)."""
    if not path:
        return key
    return f"{path}{key}" if key.startswith("[") else f"{path}.{key}"


@dataclass(frozen=True)
class Pattern:
    """What a text field allows, as a regular expression (matched whole) and in words for messages."""

    regex: str
    text: str

    def matches(self, value: str) -> bool:
        return re.fullmatch(self.regex, value) is not None


@dataclass(frozen=True)
class FieldSpec:
    """What a field allows beyond its type: an interval (numbers) or a set of choices, and its doc.

    Args:
        low: lower end of the interval (None: -inf).
        high: upper end (None: inf).
        low_open: `low` itself is excluded.
        high_open: `high` itself is excluded.
        choices: the allowed values (None: any value of the type).
        doc: one line on what the key does, for messages and help texts.
        limit: the cost limit: the largest value a file may ask for without raising it on purpose
            (None: none); see `enforcing_limits`.
        pattern: what a text must look like (None: any text).
        nonempty: a list must hold at least one value.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    doc: str = ""
    limit: float | None = None
    pattern: Pattern | None = None
    nonempty: bool = False

    def interval(self) -> str | None:
        """`[1, inf)`, `(0, 1]`, ...; None when the field has no bound."""
        if self.low is None and self.high is None:
            return None
        left = "(" if self.low is None or self.low_open else "["
        right = ")" if self.high is None or self.high_open else "]"
        low = "-inf" if self.low is None else _number(self.low)
        high = "inf" if self.high is None else _number(self.high)
        return f"{left}{low}, {high}{right}"

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


_NO_SPEC = FieldSpec()


def spec(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[Any, ...] | None = None,
    doc: str = "",
    limit: float | None = None,
    pattern: Pattern | None = None,
    nonempty: bool = False,
) -> Any:
    """A dataclass field with its allowed values (checked by `check`, `build` and `flag_type`).

    The field's annotation is its type (`int`, `float`, `bool`, `str`, `X | None`,
    `tuple[X, ...]`); bounds and choices apply to each number or element.

    Args:
        default: the default value (leave out for a required key).
        default_factory: for a default that is built per instance.
        ge: value >= ge (at most one of ge and gt).
        gt: value > gt.
        le: value <= le (at most one of le and lt).
        lt: value < lt.
        choices: the allowed values.
        doc: one line on what the key does.
        limit: the cost limit: a file asking for more is refused unless its `limits:` raises it
            (numbers; see `enforcing_limits`).
        pattern: what a text must look like.
        nonempty: a list field must hold at least one value (null stays allowed for `X | None`).

    Returns:
        A `dataclasses.field` whose metadata holds the frozen `FieldSpec`.
    """
    if ge is not None and gt is not None or le is not None and lt is not None:
        raise ValueError("give at most one lower bound (ge or gt) and one upper bound (le or lt)")
    declared = FieldSpec(
        low=gt if gt is not None else ge,
        high=lt if lt is not None else le,
        low_open=gt is not None,
        high_open=lt is not None,
        choices=tuple(choices) if choices is not None else None,
        doc=doc,
        limit=limit,
        pattern=pattern,
        nonempty=nonempty,
    )
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_METADATA_KEY: declared})


@dataclass(frozen=True)
class _Rule:
    """One field of a config class, its type resolved: what `check` and the messages need."""

    name: str
    hint: Any
    spec: FieldSpec
    default: Any  # dataclasses.MISSING when the key is required

    def allowed(self) -> str:
        """`float in (0, inf) (default 0.1) - step size`."""
        default = "" if self.default is dataclasses.MISSING else f" (default {show(self.default)})"
        return f"{_kind(self.hint, self.spec)}{default}{self.doc_suffix()}"

    def allowed_flag(self) -> str:
        """What one command-line value may be: `int in [1, inf) - step size` (no null; the flag's
        default is the command's own, usually the scenario's value)."""
        return f"{_kind(_leaf(self.hint), self.spec)}{self.doc_suffix()}"

    def doc_suffix(self) -> str:
        return f" - {self.spec.doc}" if self.spec.doc else ""


@functools.cache
def _rules(cls: type) -> dict[str, _Rule]:
    hints = typing.get_type_hints(cls)
    rules = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        rules[f.name] = _Rule(f.name, hints[f.name], f.metadata.get(_METADATA_KEY, _NO_SPEC), default)
    return rules


def check(instance: Any, *, owner: str | None = None) -> None:
    """Check every field of a config dataclass; call it from `__post_init__`.

    Checks the type, interval and choices of each value; an int given for a float field is
    stored as a float, a list given for a tuple field as a tuple.

    Args:
        instance: the dataclass instance (frozen or not).
        owner: who to name in messages (default: the class name).

    Raises:
        FieldError: `Owner.key: <problem>; allowed: <what the field allows>`, one line per bad field.
    """
    owner = owner or type(instance).__name__
    problems = []
    for rule in _rules(type(instance)).values():
        value = getattr(instance, rule.name)
        try:
            checked = _checked(rule, value, owner, rule.name, rule.hint)
        except FieldError as err:
            problems.append(err)
            continue
        if checked is not value:
            object.__setattr__(instance, rule.name, checked)  # frozen dataclasses too
    if problems:
        raise combine(problems)


def check_value(cls: type, name: str, value: Any, *, owner: str | None = None) -> Any:
    """`value` checked against field `name` of `cls` (coerced like `check` does).

    Raises:
        FieldError: as `check` would for an instance holding `value`.
    """
    rule = _rules(cls)[name]
    return _checked(rule, value, owner or cls.__name__, name, rule.hint)


def describe(cls: type, name: str) -> str:
    """What field `name` of `cls` allows: `float in (0, inf) (default 0.1) - step size` (for help texts)."""
    return _rules(cls)[name].allowed()


def build(
    cls: type,
    data: Mapping[str, Any],
    *,
    owner: str,
    convert: Callable[[Any, Any, str], Any] | None = None,
) -> Any:
    """`cls(**data)`, with unknown and missing keys reported like bad values.

    Args:
        cls: a config dataclass (its `__post_init__` calls `check`).
        data: key -> value, e.g. a section of a YAML file.
        owner: the key path of `data` in messages (`attack`, `defenses[0]`; empty at the top level).
        convert: `convert(type, value, key_path)` turns a raw value into what the field holds
            (the YAML loader builds nested sections with it); values pass as they are without it.

    Raises:
        FieldError: `owner.key: unknown key (did you mean ...?); allowed here: ...`,
            `owner.key: required key is missing; allowed: ...`, or the problems `check` found,
            seen from `owner`: every problem of `data` at once (`FieldError.errors`).
    """
    rules = _rules(cls)
    init = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    problems: dict[Any, FieldError] = {}
    suggested = set()  # a misspelt key is not also reported missing
    for key, value in data.items():
        if key not in init:
            hint = closest(str(key), tuple(init))
            suggested.add(hint)
            suggestion = f" (did you mean {hint!r}?)" if hint else ""
            problems[key] = FieldError(owner, key_text(key), f"unknown key{suggestion}; allowed here: {', '.join(init)}")
            continue
        try:
            kwargs[key] = convert(rules[key].hint, value, join(owner, key)) if convert else value
        except FieldError as err:
            problems[key] = err
    missing = [FieldError(owner, name, f"required key is missing; allowed: {rules[name].allowed()}")
               for name in init if name not in data and name not in suggested and rules[name].default is dataclasses.MISSING]
    if problems or missing:
        # The class cannot be built; the keys that could are still checked, so one reading reports every problem.
        for key, value in kwargs.items():
            try:
                check_value(cls, key, value)
            except FieldError as err:
                problems[key] = err.within(owner)
        raise combine([*(problems[key] for key in data if key in problems), *missing])
    try:
        return cls(**kwargs)
    except FieldError as err:
        raise err.within(owner) from None


def flag_type(cls: type, name: str) -> Callable[[str], Any]:
    """An argparse `type=` for a flag that sets field `name` of `cls` (one element of a tuple field).

    The text is parsed as the field's type and checked with the field's rule, so a bad value is
    argparse's one-line `error: argument --flag: <problem>; allowed: ...` (exit status 2).
    """
    rule = _rules(cls)[name]
    leaf = _leaf(rule.hint)

    def parse(text: str) -> Any:
        value: Any = text
        if leaf in (int, float):
            try:
                value = leaf(text)
            except ValueError:
                expected = "an integer" if leaf is int else "a number"
                raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}; allowed: {rule.allowed_flag()}") from None
        problem, checked = _problem(rule, leaf, value, name)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"{problem[1]}; allowed: {rule.allowed_flag()}")
        return checked

    parse.__name__ = getattr(leaf, "__name__", "value")  # argparse names the type in some messages
    return parse


def flag(cls: type, name: str, *, help: str | None = None, **kwargs: Any) -> dict[str, Any]:  # noqa: A002 - argparse's name
    """Keyword arguments of `add_argument` for a flag that sets field `name` of `cls`.

    `type=` is `flag_type(cls, name)`; the help is `help` (argparse's `%(default)s` works there;
    default: the field's doc) followed by what the field allows and the flag's default when it
    has a value; `kwargs` are passed on (`default=`, `metavar=`, `nargs=`).
    """
    rule = _rules(cls)[name]
    allowed = _kind(_leaf(rule.hint), rule.spec)
    default = kwargs.get("default")
    if default is not None and default is not argparse.SUPPRESS and help is None:
        allowed += f"; default {show(default)}"
    text = help if help is not None else rule.spec.doc.replace("%", "%%")  # argparse %-formats help
    return {"type": flag_type(cls, name), "help": f"{text} ({allowed.replace('%', '%%')})", **kwargs}


def key_text(key: Any) -> str:
    """A key as a message names it: as written when it is a plain word, else quoted (one line, cut short)."""
    text = str(key) if isinstance(key, str) else _shown(key)
    return clip(text if text.isprintable() and text.strip() == text and text else repr(text), 60)


def show(value: Any) -> str:
    """A value as a YAML user writes it: null, true, 'text', 0.1, [1, 2] (long values cut short)."""
    return clip(_shown(value))


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_shown(v) for v in value[:20]) + (", ...]" if len(value) > 20 else "]")
    if isinstance(value, Mapping):
        items = list(value.items())
        return "{" + ", ".join(f"{key_text(k)}: {_shown(v)}" for k, v in items[:20]) + (", ...}" if len(items) > 20 else "}")
    if isinstance(value, int) and value.bit_length() > 14_000:  # repr refuses ints of more than 4300 digits
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    return repr(value)


# --- cost limits ---------------------------------------------------------------------------------------

#: While a file is read: the limits it raises (key name -> largest value); None when limits are not enforced.
_ENFORCED: contextvars.ContextVar[Mapping[str, float] | None] = contextvars.ContextVar("flaudit_limits", default=None)


@contextlib.contextmanager
def enforcing_limits(raised: Mapping[str, float] | None = None) -> Iterator[None]:
    """Within the block, a value above its field's cost limit is refused, unless `raised` lifts the
    limit of that key name (a file's top-level `limits: {clients: 20000}`; a value below the
    declared limit leaves it as it is).

    The scenario loader wraps each file in it; a command that builds configs from a run's
    scenario wraps its work in it with that scenario's `limits`.
    """
    token = _ENFORCED.set(dict(raised or {}))
    try:
        yield
    finally:
        _ENFORCED.reset(token)


def raised_limits() -> Mapping[str, float]:
    """The limits the enclosing `enforcing_limits` raises (empty outside one)."""
    return _ENFORCED.get() or {}


def limited_keys(*classes: type) -> dict[str, float]:
    """Key name -> cost limit of every limited field of `classes` and of the config classes their fields hold."""
    found: dict[str, float] = {}
    seen: set[type] = set()
    todo = list(classes)
    while todo:
        cls = todo.pop()
        if cls in seen or not dataclasses.is_dataclass(cls):
            continue
        seen.add(cls)
        for rule in _rules(cls).values():
            if rule.spec.limit is not None:
                found[rule.name] = max(found.get(rule.name, rule.spec.limit), rule.spec.limit)
            todo += [t for t in _types_in(rule.hint) if dataclasses.is_dataclass(t)]
    return found


def _types_in(hint: Any) -> list[Any]:
    args = get_args(hint)
    return [t for a in args for t in _types_in(a)] if args else [hint]


# --- the rule itself --------------------------------------------------------------------------------


def _checked(rule: _Rule, value: Any, owner: str, key: str, hint: Any) -> Any:
    """`value` coerced to `hint`, or FieldError naming `owner.key`."""
    problem, checked = _problem(rule, hint, value, key)
    if problem is not None:
        bad_key, text = problem
        raise FieldError(owner, bad_key, f"{text}; allowed: {rule.allowed()}")
    return checked


def _problem(rule: _Rule, hint: Any, value: Any, key: str) -> tuple[tuple[str, str] | None, Any]:
    """((key, problem) or None, the coerced value)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None, None
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"config field type {hint!r} is not supported")  # a bug in a declaration
        return _problem(rule, options[0], value, key)
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return (key, f"expected a list, got {_type_name(value)}"), value
        if rule.spec.nonempty and not value:
            return (key, "[] is empty; list at least one value"), value
        items = []
        for index, item in enumerate(value):
            problem, checked = _problem(rule, get_args(hint)[0], item, f"{key}[{index}]")
            if problem is not None:
                return problem, value
            items.append(checked)
        same = isinstance(value, tuple) and all(a is b for a, b in zip(items, value))
        return None, value if same else tuple(items)
    if hint is Mapping or origin in (Mapping, dict, typing.Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            return (key, f"expected a mapping, got {_type_name(value)}"), value
        return None, value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            return (key, f"expected a mapping of {hint.__name__}'s keys, got {_type_name(value)}"), value
        return None, value
    problem, checked = _scalar(hint, value)
    if problem is None:
        problem = _allowed_value(rule, checked, given=value)
    return ((key, problem) if problem else None), checked


def _scalar(hint: Any, value: Any) -> tuple[str | None, Any]:
    if hint is Any:
        return None, value
    if hint is bool:
        return (None if isinstance(value, bool) else f"expected true or false, got {show(value)}"), value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return f"expected an integer, got {show(value)}", value
        return None, value if type(value) is int else int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"expected a number, got {show(value)}", value
        try:
            number = value if type(value) is float else float(value)
        except OverflowError:  # an integer beyond every float
            number = math.inf
        if not math.isfinite(number):
            return f"{show(value)} is not a finite number", value
        return None, number
    if hint is str:
        return (None if isinstance(value, str) else f"expected a string, got {show(value)}"), value
    raise TypeError(f"config field type {hint!r} is not supported")  # a bug in a declaration


def _allowed_value(rule: _Rule, value: Any, *, given: Any) -> str | None:
    """What is wrong with a value of the right type (`given` is how it was written: -1, not -1.0)."""
    declared = rule.spec
    if declared.choices is not None and value not in declared.choices:
        hint = closest(value, tuple(str(c) for c in declared.choices)) if isinstance(value, str) else None
        suggestion = f" (did you mean {hint!r}?)" if hint else ""
        return f"{show(given)} is not allowed{suggestion}"
    if declared.pattern is not None and isinstance(value, str) and not declared.pattern.matches(value):
        return f"{show(given)} is not allowed"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not declared.contains(value):
            return f"{show(given)} is out of range"
        return _over_limit(rule, value, given=given)
    return None


def _over_limit(rule: _Rule, value: float, *, given: Any) -> str | None:
    """The cost-limit problem of a number, while limits are enforced (`enforcing_limits`)."""
    raised = _ENFORCED.get()
    if rule.spec.limit is None or raised is None:
        return None
    limit = max(raised.get(rule.name, rule.spec.limit), rule.spec.limit)  # a limit is raised, never lowered
    if value <= limit:
        return None
    which = f"its raised limit {_number(limit)} (limits.{rule.name})" if limit > rule.spec.limit else f"the cost limit {_number(limit)}"
    return (f"{show(given)} is above {which}: it would exhaust memory or run for days; to run it on purpose, "
            f"set `limits: {{{rule.name}: {show(given)}}}` at the top level of the scenario")


def _kind(hint: Any, declared: FieldSpec) -> str:
    """What a type and spec allow, in words: `int in [1, inf)`, `one of 'l2', 'cosine'`, `list of ...`."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        return " or ".join(_kind(option, declared) for option in options) + " or null"
    if origin is tuple:
        return f"list of {_kind(get_args(hint)[0], declared)}"
    if declared.choices is not None:
        return "one of " + ", ".join(show(c) for c in declared.choices)
    if declared.pattern is not None:
        return declared.pattern.text
    if hint is Mapping or origin in (Mapping, dict, typing.Mapping) or hint is dict:
        return "mapping"
    if dataclasses.is_dataclass(hint):
        return f"mapping of {hint.__name__}'s keys"
    name = {bool: "true or false", int: "int", float: "float", str: "str", Any: "any value"}.get(hint, str(hint))
    interval = declared.interval()
    return f"{name} in {interval}" if interval else name


def _leaf(hint: Any) -> Any:
    """The scalar type under `X | None` and `tuple[X, ...]` (what one flag value is)."""
    while get_origin(hint) in (Union, types.UnionType, tuple):
        hint = next(a for a in get_args(hint) if a is not type(None))
    return hint


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e15 else repr(bound)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


__all__ = [
    "FieldError", "FieldSpec", "Pattern", "build", "check", "check_value", "combine", "describe", "enforcing_limits", "flag",
    "flag_type", "join", "key_text", "limited_keys", "raised_limits", "show", "spec",
]
