"""`flaudit validate FILE...`: check scenario files without running them."""

from __future__ import annotations

import argparse

from audit.pipeline import load_checked_scenario


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="check scenario files", description="Check scenario files: keys, types, ranges and names.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="scenario YAML files")
    parser.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    for path in args.files:
        scenario = load_checked_scenario(path)
        extra = f", sweep of {sum(len(a.values) for a in scenario.sweep)} variants" if scenario.sweep else ""
        attack = f", attack {scenario.attack.name}" if scenario.attack else ""
        print(f"{path}: ok ({scenario.name}: {scenario.federation.protocol}, {scenario.federation.clients} clients, "
              f"{scenario.federation.rounds} rounds, {scenario.data.dataset}, {scenario.model.name}{attack}{extra})")
    return 0
