"""The `flaudit` command line. Each sub-command lives in `pipeline/commands/<name>.py` with a `register`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from flaudit import __version__
from flaudit.errors import FlauditError
from pipeline.commands.options import add_threads_option
from flaudit.progress import set_quiet
from flaudit.threads import short_openmp_spin

# One module per sub-command; each defines `register(subparsers)` and sets `func` on its parser.
COMMAND_MODULES: tuple[str, ...] = (
    "pipeline.commands.validate",
    "pipeline.commands.run",
    "pipeline.commands.attack",
    "pipeline.commands.semsim",
    "pipeline.commands.study",
    "pipeline.commands.audit",
    "pipeline.commands.doctor",
    "pipeline.commands.verify",
    "pipeline.commands.annotate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flaudit",
        description="Federated-learning simulation and privacy audit: run scenarios, attack captured updates, score leakage.",
    )
    parser.add_argument("--version", action="version", version=f"flaudit {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-round lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Flower's and Ray's own logs")
    add_threads_option(parser, default=None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    short_openmp_spin()  # before torch loads libgomp, which reads it once (see flaudit/threads.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except FlauditError as err:
        for line in str(err).splitlines() or [""]:  # one line per problem (a scenario's are all listed)
            print(f"flaudit: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flaudit: interrupted; completed steps are kept in the run directory, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
