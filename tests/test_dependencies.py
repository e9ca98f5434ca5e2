"""Every package the code imports is declared in pyproject.toml, and installed.

A missing declaration only shows on a fresh machine (a developer's environment has the package
from some earlier install), so this reads the imports statically: removing a dependency from
pyproject.toml fails here on any machine.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("flaudit", "fl_sim", "defenses", "attacks", "audit", "semsim")
# Import names whose distribution is named differently, for environments where the
# distribution is not installed and `packages_distributions` cannot tell.
ALIASES = {"PIL": "pillow", "skimage": "scikit-image", "sklearn": "scikit-learn", "yaml": "pyyaml", "pytorch_fid": "pytorch-fid"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0])


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_requirement_name(r) for r in project["dependencies"]}


def _third_party_imports() -> dict[str, str]:
    """Top-level module -> the first file importing it, over the product packages."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES and top != "__future__":
                        found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_every_imported_package_is_declared() -> None:
    declared = _declared()
    providers = metadata.packages_distributions()
    undeclared = {}
    for module, where in _third_party_imports().items():
        candidates = {_normalise(d) for d in providers.get(module, [])} | {_normalise(ALIASES.get(module, module))}
        if not candidates & declared:
            undeclared[module] = where
    assert undeclared == {}, f"imported but not declared in pyproject.toml [project.dependencies]: {undeclared}"


def test_every_declared_dependency_is_installed() -> None:
    missing = []
    for name in sorted(_declared()):
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    assert missing == [], f"declared in pyproject.toml but not installed: {missing}; run pip install -e '.[test]'"


def test_the_metric_packages_are_declared() -> None:
    # LPIPS and FID degrade to "unavailable" when their package is missing; that must never be
    # how a plain install behaves.
    assert {"lpips", "pytorch-fid"} <= _declared()
