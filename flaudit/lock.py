"""One writer per run directory: an exclusive lock on `RUN_DIR/.lock`, taken by every command that writes one.

The lock is `fcntl.flock` on that file: the kernel drops it when the holder's process ends, however
it ends (SIGKILL included), so a lock is never stale and there is nothing to clean up by hand. The
file itself stays (deleting it would race a writer that has just opened it); it holds the holder's
PID and command line, for the message a second writer gets. Being a dot-file, it is not one of the
run's files (`flaudit.rundir.RunDir.files`), so `flaudit verify` does not list it.

A writer that was killed may have left the temporary file of an atomic write (`flaudit.io`); the
next writer, holding the lock, removes them.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from flaudit.errors import RunDirLockedError
from flaudit.io import remove_temp_files

LOCK_FILE = ".lock"


@contextmanager
def run_dir_lock(root: str | Path, *, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the writer's lock of run directory `root` (created if missing) for the `with` block.

    Args:
        root: the run directory.
        wait: when another process holds it, wait until it is released instead of failing.
        on_wait: told what is awaited (a line naming the directory and the holder) before waiting.

    Raises:
        RunDirLockedError: another process holds the lock and `wait` is false; the message names the
            directory and the holder's PID and command.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(path)
            if not wait:
                raise RunDirLockedError(
                    f"{root} is being written by another flaudit process ({holder}); let it finish, "
                    f"or pass --wait to start when it has"
                ) from None
            if on_wait is not None:
                on_wait(f"{root} is being written by another flaudit process ({holder}); waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        _write_holder(fd)
        remove_temp_files(root, skip=lambda folder: folder != root and (folder / LOCK_FILE).exists())
        yield root
    finally:
        os.close(fd)  # releases the lock


def _describe_holder(path: Path) -> str:
    """'PID 1234: flaudit run s.yaml, since 2025-01-01T10:00:00+00:00' from a lock file ('PID unknown' when unreadable)."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return f"PID {int(holder['pid'])}: {holder['command']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "PID unknown"  # the holder has opened the file and not yet written itself into it


def _write_holder(fd: int) -> None:
    command = " ".join([Path(sys.orig_argv[0]).name, *sys.orig_argv[1:]])
    holder = {"pid": os.getpid(), "command": command, "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
