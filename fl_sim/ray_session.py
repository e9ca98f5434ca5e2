"""Ray for one federation: started here rather than by Flower, and gone when the federation ends.

Flower's simulation starts Ray when it is not running and never stops it. Left to that, Ray did three
things a shared machine does not want, each fixed here:

- **Workers imported the code in the current folder.** Ray puts the driver's working directory
  first on every worker's `sys.path` (`ray/_private/worker.py`, `code_paths`, unless the runtime
  environment has a `working_dir`), so a checkout in the folder `flaudit run` was started from ran in
  the workers while the driver ran the installed package. Ray is started from its own empty folder
  instead (that folder is what goes first on the workers' path); the workers get the driver's import
  path (PYTHONPATH, as Flower passes it when it starts Ray) and a setup hook moves each one back to the
  driver's working directory, where a scenario's relative paths point.
- **Its processes outlived the run**: Flower leaves Ray running after the federation (through the
  attack and the audit), Ctrl-C and SIGTERM left it to Ray's own exit handlers, and after a SIGKILL its
  agents and idle workers lived on for 30 to 120 s. `ray.shutdown()` runs in a `finally` (Ctrl-C and
  SIGTERM, which the command line turns into an interrupt, reach it), and a watchdog process
  (`fl_sim/ray_watchdog.py`) kills what is left once the driver is gone, however it ended.
- **Session folders piled up** in /tmp/ray. Each federation's Ray gets a folder of its own under the
  temporary directory, removed when the federation ends (or by the watchdog).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flaudit.errors import FlauditError

#: Ray's settings, unless the environment already sets them.
RAY_ENVIRONMENT = {
    "RAY_DEDUP_LOGS": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    # Ray starts its workers at nice 15 to favour its own services; here the workers are the simulated
    # clients, the federation's real work. Beside a busy normal-priority process a nice-15 worker gets
    # about 1/28 of a core: the quickstart's federation took 179 s against 29 s idle. Nice 0, as Ray's
    # own job submission uses, puts them level with the driver (see flaudit/threads.py).
    "RAY_worker_niceness": "0",
}
FOLDER_PREFIX = "flaudit-ray-"
# A Unix socket's path holds at most 107 bytes; Ray's longest is
# RAY_DIR/session_YYYY-MM-DD_HH-MM-SS_UUUUUU_PID/sockets/plasma_store.
_SOCKET_PATH_MAX = 107
_SOCKET_TAIL = len("/session_2025-01-01_00-00-00_000000_4194304/sockets/plasma_store")
_WATCHDOG = Path(__file__).with_name("ray_watchdog.py")


@dataclass(frozen=True)
class _Ray:
    """A Ray this process started: its folder and the watchdog that cleans up after it."""

    folder: Path
    watchdog: subprocess.Popen[bytes]


# The Ray each `shared_ray()` block in progress keeps between its federations (None until the first one).
_shared: list[_Ray | None] = []


@contextmanager
def ray_session(*, cpus: int, verbose: bool = False) -> Iterator[Path]:
    """Ray for the `with` block (Flower's simulation then uses it): started here and shut down when the block
    ends; inside a `shared_ray()` block, that block's Ray, started by its first federation.

    Args:
        cpus: the CPUs Ray may schedule clients on.
        verbose: Ray's own logs, and its workers' output, on the console.

    Yields:
        Ray's folder (sessions, logs, sockets), removed when Ray is shut down.

    Raises:
        FlauditError: no temporary folder is short enough for Ray's sockets.
    """
    if _shared:
        if _shared[-1] is None:
            _shared[-1] = _start(cpus=cpus, verbose=verbose)
        yield _shared[-1].folder
        return
    running = _start(cpus=cpus, verbose=verbose)
    try:
        yield running.folder
    finally:
        _stop(running)


@contextmanager
def shared_ray() -> Iterator[None]:
    """The federations run in the block share one Ray, shut down when the block ends: a sweep's variants pay
    Ray's start-up (seconds, more on a busy machine) once, and none when every federation is already done."""
    _shared.append(None)
    try:
        yield
    finally:
        running = _shared.pop()
        if running is not None:
            _stop(running)


def _start(*, cpus: int, verbose: bool) -> _Ray:
    import ray

    folder = ray_folder()
    running = _Ray(folder, start_watchdog(folder))
    try:
        for name, value in RAY_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        driver_dir = os.getcwd()
        runtime_env = {
            "env_vars": {"PYTHONPATH": os.pathsep.join(path for path in sys.path if path)},
            "worker_process_setup_hook": _enter(driver_dir),
        }
        on_sigterm = signal.getsignal(signal.SIGTERM)
        os.chdir(folder)  # what Ray puts first on the workers' sys.path, as the driver's working directory
        try:
            ray.init(
                num_cpus=cpus, include_dashboard=False, logging_level=logging.DEBUG if verbose else logging.ERROR,
                log_to_driver=verbose, configure_logging=True, runtime_env=runtime_env, _temp_dir=str(folder),
            )
        finally:
            os.chdir(driver_dir)
        if on_sigterm is not None and threading.current_thread() is threading.main_thread():
            # Ray's core worker replaces the driver's SIGTERM handler with its own, which prints a stack and
            # aborts, skipping every `finally`: the process keeps the handler it had (the command line's
            # turns SIGTERM into an interrupt that ends here, through `ray.shutdown()`).
            signal.signal(signal.SIGTERM, on_sigterm)
    except BaseException:
        _stop(running)
        raise
    return running


def _stop(running: _Ray) -> None:
    import ray

    try:
        ray.shutdown()
    finally:
        running.watchdog.stdin.close()  # type: ignore[union-attr]  # its cue: kill what is left, remove the folder
        try:
            running.watchdog.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass  # it finishes on its own; the run does not wait for it
        shutil.rmtree(running.folder, ignore_errors=True)


def start_watchdog(folder: Path) -> subprocess.Popen[bytes]:
    """`fl_sim/ray_watchdog.py` for this process and `folder`: it ends this process's Ray processes (those
    naming `folder`) and removes `folder` once this process has closed the watchdog's stdin, or has died."""
    return subprocess.Popen(
        [sys.executable, "-I", str(_WATCHDOG), str(os.getpid()), str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=folder, start_new_session=True,
    )


def ray_folder() -> Path:
    """A new, empty folder for one Ray session, under the temporary directory (or /tmp when that path is too
    long for Ray's sockets)."""
    for parent in dict.fromkeys([tempfile.gettempdir(), "/tmp"]):
        room = _SOCKET_PATH_MAX - _SOCKET_TAIL - len(os.path.join(parent, FOLDER_PREFIX + "XXXXXXXX"))
        if room >= 0 and os.access(parent, os.W_OK | os.X_OK):
            return Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=parent))
    raise FlauditError(
        f"no temporary folder for Ray: {tempfile.gettempdir()} is too long a path for Ray's sockets "
        f"(at most {_SOCKET_PATH_MAX - _SOCKET_TAIL - len(FOLDER_PREFIX) - 9} characters) and /tmp is not writable; "
        f"set TMPDIR to a short folder"
    )


def _enter(directory: str) -> Callable[[], None]:
    # A nested function, so that Ray's cloudpickle sends it by value: a worker runs it without importing
    # this package (it runs before Ray puts the driver's folder on the worker's path, at its first task).
    def enter_driver_directory() -> None:
        os.chdir(directory)

    return enter_driver_directory
