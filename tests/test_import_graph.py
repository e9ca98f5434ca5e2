"""No cycle in the module-level import graph of the first-party packages.

A cycle among imports that run when a module loads makes the outcome depend on which module is
imported first (a half-initialised module, an ImportError far from the cause). The graph is read
statically with `ast`: every import a module runs when it is loaded, nested statements (`try`,
`if`, class bodies) included; imports inside functions run later and are left out, as are those
under `if TYPE_CHECKING:` (annotations only). The packages are every top-level folder with an
`__init__.py` (tests aside), so a new package is covered without editing this file.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = tuple(sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name != "tests"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def load_time_imports(path: Path, modules: set[str]) -> dict[str, int]:
    """First-party module -> line of each import `path` runs when it is loaded."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target in modules and target != name:
            found.setdefault(target, line)

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return  # runs when called, not when the module loads
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            add(base, node.lineno)
            for alias in node.names:
                add(f"{base}.{alias.name}", node.lineno)  # `from pkg import module`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def import_graph() -> dict[str, dict[str, int]]:
    paths = {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    return {name: load_time_imports(path, set(paths)) for name, path in paths.items()}


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, in name order for a stable answer)."""
    done: set[str] = set()
    trail: list[str] = []
    on_trail: set[str] = set()

    def visit(node: str) -> list[str] | None:
        trail.append(node)
        on_trail.add(node)
        for target in sorted(graph[node]):
            if target in on_trail:
                return [*trail[trail.index(target):], target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        trail.pop()
        on_trail.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_first_party_packages_are_found() -> None:
    assert {"attacks", "audit", "defenses", "fl_sim", "flaudit", "pipeline", "semsim"} <= set(PACKAGES)


def test_no_module_level_import_cycle() -> None:
    graph = import_graph()
    cycle = find_cycle(graph)
    steps = [f"{a} imports {b} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])] if cycle else []
    assert cycle is None, "module-level import cycle:\n  " + "\n  ".join(steps)


def test_the_scenario_schema_loads_no_code_that_runs_a_scenario() -> None:
    # fl_sim.data takes the schema's DataConfig; the schema must not need the datasets back.
    graph = import_graph()
    assert not {"fl_sim.data", "fl_sim.job", "fl_sim.training"} & set(graph["fl_sim.scenario"])


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        # The attack stage takes AttackConfig without the simulation (fl_sim).
        ("attacks.config", ("torch", "flwr", "ray", "fl_sim")),
        ("flaudit.fields", ("torch", "flwr", "ray", *(p for p in PACKAGES if p != "flaudit"))),
        ("fl_sim.scenario", ("torch", "flwr", "ray")),
        ("semsim.config", ("torch", "flwr", "ray")),
        ("pipeline.study_scenario", ("torch", "flwr", "ray")),
    ],
)
def test_config_modules_load_light(module: str, forbidden: tuple[str, ...]) -> None:
    probe = f"import json, sys, {module}; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    assert json.loads(done.stdout) == []


def test_the_cycle_finder_finds_and_prints_a_cycle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None
