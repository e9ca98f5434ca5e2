"""The `flaudit` command line. Each sub-command lives in `pipeline/commands/<name>.py` with a `register`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from flaudit import __version__
from flaudit.errors import FlauditError, Terminated
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
    previous = _terminate_like_interrupt()
    try:
        return int(args.func(args) or 0)
    except FlauditError as err:
        for line in str(err).splitlines() or [""]:  # one line per problem (a scenario's are all listed)
            print(f"flaudit: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print("flaudit: interrupted; completed steps are kept in the run directory, re-run to resume", file=sys.stderr)
        code = 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)
        _end_without_stuck_threads(code)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _end_without_stuck_threads(code: int) -> None:
    """End the process now when threads other than this one are left running after an interrupt.

    An interrupted federation can leave a Flower worker thread waiting on Ray, which `ray.shutdown()`
    has ended: it never returns, and Python would wait for it at exit for ever. Everything the command
    owns has been cleaned up by the time the interrupt reaches here (Ray, its folder, the lock), so
    the process ends with `code` without waiting for such threads, its output flushed.
    """
    stuck = [t for t in threading.enumerate() if t is not threading.current_thread() and t.is_alive() and not t.daemon]
    if stuck:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _terminate_like_interrupt() -> Any:
    """SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread, as Ctrl-C does: the command
    ends through its `finally` blocks (Ray shut down, temporary files removed, the run directory's lock
    released) instead of dying where it stands. Returns the previous handler (None off the main thread,
    where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: object) -> None:
        raise Terminated(signum)

    return signal.signal(signal.SIGTERM, terminate)


if __name__ == "__main__":
    sys.exit(main())
