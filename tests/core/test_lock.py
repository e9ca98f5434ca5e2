"""One writer per run directory (flaudit.lock): refused or awaited while held, free when the holder dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flaudit.errors import RunDirLockedError
from flaudit.io import atomic_write_text
from flaudit.lock import LOCK_FILE, run_dir_lock
from flaudit.rundir import RunDir
from pipeline.cli import main

# A process that takes the lock, says so, and holds it until its stdin closes (or it is killed).
HOLDER = """
import sys
from flaudit.lock import run_dir_lock
with run_dir_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock of tmp_path/run."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_second_writer_is_refused_with_the_directory_and_the_holder(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(RunDirLockedError) as err, run_dir_lock(tmp_path / "run"):
        pass
    message = str(err.value)
    assert str(tmp_path / "run") in message and f"PID {holder.pid}: {Path(sys.executable).name} -c" in message and "--wait" in message


def test_wait_starts_when_the_holder_finishes(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    told: list[str] = []

    def release(line: str) -> None:
        told.append(line)
        holder.stdin.close()  # type: ignore[union-attr]  # the holder leaves its `with` and ends

    with run_dir_lock(tmp_path / "run", wait=True, on_wait=release):
        assert holder.wait() == 0
        holding = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
    assert told and f"PID {holder.pid}" in told[0] and "waiting" in told[0]
    assert holding["pid"] == os.getpid()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with run_dir_lock(tmp_path / "run"):  # at once: the kernel released the lock with the process
        pass
    # One writer, even within a process.
    with run_dir_lock(tmp_path / "run"), pytest.raises(RunDirLockedError, match=f"PID {os.getpid()}"), run_dir_lock(tmp_path / "run"):
        pass


def test_the_lock_file_is_not_a_run_file(tmp_path: Path) -> None:
    store = RunDir(tmp_path)
    atomic_write_text(tmp_path / "history.json", "{}")
    store.seal([tmp_path / "history.json"])
    with run_dir_lock(tmp_path):
        assert store.verify() == []
    assert (tmp_path / LOCK_FILE).exists() and store.verify() == []


def test_the_writer_removes_temporary_files_of_a_killed_one_but_not_of_a_nested_run(tmp_path: Path) -> None:
    stale = [tmp_path / ".history.json.abc123.tmp", tmp_path / "captures" / "round_001" / ".client_000.safetensors.x1.tmp"]
    nested = tmp_path / "prune-ratio-0.5"  # a sweep's variant: a run directory with its own lock
    nested_temp = nested / "captures" / ".client_000.safetensors.y2.tmp"
    kept = [tmp_path / ".hidden", tmp_path / "notes.tmp", nested_temp]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (nested / LOCK_FILE).touch()
    with run_dir_lock(tmp_path):
        assert [p for p in stale if p.exists()] == []
        assert all(p.exists() for p in kept)


def test_cli_refuses_a_second_writer_with_the_holders_pid(tmp_path: Path, holder: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run" / "attacks").mkdir()
    assert main(["audit", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"flaudit: error: {tmp_path / 'run'} is being written by another flaudit process (PID {holder.pid}")
    assert "Traceback" not in err


def test_wait_is_documented_on_every_writing_command(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "attack", "audit"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--wait" in capsys.readouterr().out, command
