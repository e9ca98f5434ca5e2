"""Each room imports only the rooms below it (DESIGN.md's dependency graph), at any depth of the code.

Read statically, function-level imports included (a lazy import is still a dependency); imports
under `if TYPE_CHECKING:` are annotations only and left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("flaudit", "defenses", "attacks", "semsim", "fl_sim", "audit", "pipeline")
#: room -> the first-party rooms it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "flaudit": set(),
    "defenses": {"flaudit"},
    "attacks": {"flaudit"},
    "semsim": {"flaudit"},
    "fl_sim": {"flaudit", "attacks", "defenses"},
    "audit": {"flaudit", "attacks", "semsim", "fl_sim"},
    "pipeline": {"flaudit", "defenses", "attacks", "semsim", "fl_sim", "audit"},
}
#: third-party packages a room must not import: the simulation's engine stays in fl_sim (and the
#: orchestration that starts it).
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {room: {"flwr", "ray"} for room in ("flaudit", "defenses", "attacks", "semsim", "audit")}


def imported_roots(path: Path) -> set[tuple[str, int]]:
    """(top-level package, line) of every import in the file, TYPE_CHECKING blocks aside."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("room", ROOMS)
def test_room_imports_only_the_rooms_below_it(room: str) -> None:
    problems = []
    for path in sorted((REPO / room).rglob("*.py")):
        for name, line in sorted(imported_roots(path)):
            if name in ROOMS and name != room and name not in ALLOWED[room]:
                problems.append(f"{path.relative_to(REPO)}:{line} imports {name}")
            if name in FORBIDDEN_THIRD_PARTY.get(room, set()):
                problems.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert problems == []


# The module-level import cycle check lives in tests/test_import_graph.py.
