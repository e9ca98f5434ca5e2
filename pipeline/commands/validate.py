"""`flaudit validate FILE...`: check scenario (and study) files without running them.

Every problem of a file is reported at once, one line each (`FILE: key.path: problem`): the
file's own keys, the scenario as a whole (selections, attack and model, sweep variants, cost
limits), and what this machine lacks for it (the device, the dataset's files). Exit status 1
when any file has a problem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flaudit.errors import FlauditError, ScenarioError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate", help="check scenario files",
        description="Check scenario files: keys, types, ranges, names, cost limits, selections, and the device and "
        "dataset files this machine has for them. Every problem of a file is listed; exit status 1 when any.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="scenario YAML files (run scenarios or study scenarios)")
    parser.set_defaults(func=_validate)


def is_study_file(path: str | Path) -> bool:
    """Study scenarios (`flaudit study`) list architectures and variants instead of a federation."""
    from fl_sim.scenario import load_yaml, read_text

    try:
        data = load_yaml(read_text(path), source=str(path))
    except ScenarioError:
        return False  # reported when the file is read as a run scenario
    return "architectures" in data and "federation" not in data


def describe(path: str | Path) -> str:
    """Validate one file; return a one-line description.

    Raises:
        FlauditError: one line per problem, each `FILE: key.path: problem`.
    """
    from fl_sim.preflight import device_missing, environment_problems

    if is_study_file(path):
        from pipeline.study_scenario import load_study

        study = load_study(path)
        missing = device_missing(study.device)
        if missing:
            raise ScenarioError(f"{path}: device: {missing}")
        return f"study {study.name}: {len(study.datasets)} datasets, {len(study.architectures)} architectures, " \
               f"{len(study.variants)} variants, {len(study.attacks)} attacks"
    from fl_sim.scenario import load_scenario

    scenario = load_scenario(path)
    problems = environment_problems(scenario)
    if problems:
        raise ScenarioError("\n".join(f"{path}: {problem}" for problem in problems))
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
            for line in str(err).splitlines():
                print(f"flaudit: error: {line}", file=sys.stderr)
    return 1 if failed else 0
