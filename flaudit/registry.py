"""Registries by name, whose error message is built from their own keys."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from flaudit.errors import UnknownNameError

T = TypeVar("T")


def closest(name: str, known: list[str] | tuple[str, ...]) -> str | None:
    """The known name nearest to `name`, if one is reasonably close (for "did you mean")."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return matches[0] if matches else None


class Registry(Generic[T]):
    """A mapping from user-facing names to factories, e.g. attacks or models.

    Args:
        kind: what the entries are, for messages ("attack", "model", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers an entry under `name`."""

        def decorate(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = entry
            return entry

        return decorate

    def add(self, name: str, entry: T) -> None:
        self.register(name)(entry)

    def get(self, name: str) -> T:
        """The entry called `name`; raises UnknownNameError listing the known names."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        hint = closest(name, self.names())
        suggestion = f" (did you mean {hint!r}?)" if hint else ""
        return f"no {self.kind} {name!r}{suggestion}; known: {', '.join(self.names())}"

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
