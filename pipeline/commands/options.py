"""Options several commands share. Every numeric or choice flag is checked with the declaration
of the config key it sets (`flaudit.fields.flag`), so a bad value is argparse's one-line error."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flaudit.errors import FlauditError
from flaudit.fields import flag, flag_type
from fl_sim.scenario import Scenario

if TYPE_CHECKING:
    from fl_sim.run_store import RunStore


def add_threads_option(parser: argparse.ArgumentParser, *, default: object = argparse.SUPPRESS) -> None:
    """`--threads N`, accepted before the command and after it (a command's copy only sets it when given).

    Checked with the scenario's `threads:` declaration (`fl_sim.scenario.Scenario`).
    """
    parser.add_argument("--threads", **flag(
        Scenario, "threads", default=default, metavar="N",
        help="CPU threads (and Ray CPUs) this run may use; default: the scenario's `threads`, "
        "else OMP_NUM_THREADS, else the CPUs this process may run on (see flaudit/threads.py)",
    ))


def add_wait_option(parser: argparse.ArgumentParser) -> None:
    """`--wait`: what to do when another flaudit process is writing the run directory (`flaudit.lock`)."""
    parser.add_argument(
        "--wait", action="store_true",
        help="when another flaudit process is writing the run directory, wait for it to finish and then go on "
        "(default: stop at once with an error naming that process's PID and command; only one process writes a run "
        "directory at a time)",
    )


def writing(run_dir: Path, args: argparse.Namespace) -> AbstractContextManager[Path]:
    """The run directory's writer lock for the command (`--wait` decides what happens when it is held)."""
    from flaudit.lock import run_dir_lock

    return run_dir_lock(run_dir, wait=args.wait, on_wait=lambda line: print(f"flaudit: {line}", file=sys.stderr))


def comma_list(cls: type, name: str) -> Callable[[str], tuple[Any, ...]]:
    """An argparse `type=` for a comma-separated flag that sets tuple field `name` of `cls`, each
    element checked with the field's rule (`a,b` -> `("a", "b")`)."""
    element = flag_type(cls, name)

    def parse(text: str) -> tuple[Any, ...]:
        return tuple(element(item.strip()) for item in text.split(",") if item.strip())

    parse.__name__ = "list"
    return parse


def scenario_threads(store: "RunStore") -> int | None:
    """The `threads:` of the scenario a run directory was made from (None when absent or unreadable)."""
    from fl_sim.scenario import load_scenario

    if not store.scenario_path.exists():
        return None
    try:
        return load_scenario(store.scenario_path).threads
    except FlauditError:
        return None


def scenario_limits(store: RunStore) -> dict[str, float]:
    """The cost limits the scenario of a run directory raised (empty when it has none or is unreadable)."""
    from fl_sim.scenario import load_scenario

    if not store.scenario_path.exists():
        return {}
    try:
        return dict(load_scenario(store.scenario_path).limits)
    except FlauditError:
        return {}
