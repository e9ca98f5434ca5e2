"""Package exports that import their module on first use (PEP 562).

A package's `__init__` that imported every submodule would load torch for anyone who imports
a torch-free part of it (`defenses.specs`, `attacks.params`): the command line's help and
`flaudit validate` must start without torch, Flower or Ray.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package` that resolve `exports` (name -> submodule) on demand.

    Usage in a package's `__init__.py`::

        __getattr__, __dir__ = lazy_exports(__name__, {"create_attack": "attacks.registry"})
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
