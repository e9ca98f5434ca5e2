"""Options several commands share."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from flaudit.errors import FlauditError

if TYPE_CHECKING:
    from fl_sim.run_store import RunStore


def add_threads_option(parser: argparse.ArgumentParser, *, default: object = argparse.SUPPRESS) -> None:
    """`--threads N`, accepted before the command and after it (a command's copy only sets it when given)."""
    parser.add_argument("--threads", type=_positive_int, default=default, metavar="N",
                        help="CPU threads (and Ray CPUs) this run may use; default: the scenario's `threads`, "
                        "else OMP_NUM_THREADS, else the CPUs this process may run on (see flaudit/threads.py)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def scenario_threads(store: "RunStore") -> int | None:
    """The `threads:` of the scenario a run directory was made from (None when absent or unreadable)."""
    from fl_sim.scenario import load_scenario

    if not store.scenario_path.exists():
        return None
    try:
        return load_scenario(store.scenario_path).threads
    except FlauditError:
        return None
