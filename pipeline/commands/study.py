"""`flaudit study SCENARIO`: the SemSim paper's metric study, end to end."""

from __future__ import annotations

import argparse
from pipeline.commands.options import add_threads_option


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "study",
        help="reproduce the SemSim metric study: variants x attacks, oracle annotations, leave-one-out SemSim, rho/tau table",
    )
    parser.add_argument("scenario", metavar="SCENARIO", help="study YAML, e.g. scenarios/metric_study.yaml")
    parser.add_argument("--out", default=None, help="results folder (default: the scenario's output/name)")
    add_threads_option(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pipeline.study import run_study
    from pipeline.study_scenario import load_study

    from flaudit.threads import configure_threads

    scenario = load_study(args.scenario)
    configure_threads(getattr(args, "threads", None))
    result = run_study(scenario, output=args.out)
    for table in result.tables.values():
        print(table)
    print(f"study finished in {result.wall_time_s:.0f} s; results in {result.folder} (results.md, per_variant.csv, study.png)")
    return 0
