"""`flaudit validate FILE...`: check scenario (and study) files without running them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from flaudit.errors import FlauditError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="check scenario files", description="Check scenario files: keys, types, ranges and names.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="scenario YAML files (run scenarios or study scenarios)")
    parser.set_defaults(func=_validate)


def is_study_file(path: str | Path) -> bool:
    """Study scenarios (`flaudit study`) list architectures and variants instead of a federation."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "architectures" in data and "federation" not in data


def describe(path: str | Path) -> str:
    """Validate one file; return a one-line description (raises FlauditError when invalid)."""
    if is_study_file(path):
        from pipeline.study_scenario import load_study

        study = load_study(path)
        return f"study {study.name}: {len(study.datasets)} datasets, {len(study.architectures)} architectures, " \
               f"{len(study.variants)} variants, {len(study.attacks)} attacks"
    from fl_sim.scenario import load_scenario

    scenario = load_scenario(path)
    extra = f", sweep of {sum(len(a.values) for a in scenario.sweep)} variants" if scenario.sweep else ""
    attack = f", attack {scenario.attack.name}" if scenario.attack else ""
    fed = scenario.federation
    return (f"{scenario.name}: {fed.protocol}, {fed.clients} clients, {fed.rounds} rounds, {scenario.data.dataset}, "
            f"{scenario.model.name}{attack}{extra}")


def _validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            print(f"{path}: ok ({describe(path)})")
        except FlauditError as err:
            failed += 1
            print(f"flaudit: error: {err}", file=sys.stderr)
    return 2 if failed else 0
