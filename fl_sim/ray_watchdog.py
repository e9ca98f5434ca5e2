"""Ends a federation's Ray processes and removes its Ray folder once the driver is gone, however it ended.

`fl_sim.ray_session` starts this file as a script, `python -I ray_watchdog.py DRIVER_PID RAY_DIR`, in a
session of its own (Ctrl-C in a terminal and a kill of the driver's process group leave it running),
with its stdin a pipe whose other end only the driver holds. End of file on that pipe means the
driver has ended: normally (it closes the pipe after `ray.shutdown()`), or killed by a signal that
no `finally` sees (SIGKILL, the out-of-memory killer). Ray's own fate sharing ends gcs_server and the
raylet with the driver, but the raylet's agents and idle workers only poll for their parent: they
outlived a SIGKILLed run by 30 to 120 s, and its session folder stayed behind.

Until then it records, every `POLL_S`, the driver's Ray processes: the driver's children whose
command line names RAY_DIR (gcs_server, the raylet, the log monitor, the dashboard head, the
autoscaler monitor), with all their descendants (the agents and workers the raylet starts). Each is
kept as (PID, start time), so that a PID the system has since given to another process is never
touched. At end of file it kills those still running and removes RAY_DIR.

Standard library and psutil only, and run with `-I`: it must not import flaudit's packages (the
current folder is not on its path either).
"""

from __future__ import annotations

import os
import select
import shutil
import sys
from collections.abc import Mapping
from typing import BinaryIO

import psutil

POLL_S = 0.2


def ray_processes(driver: psutil.Process, ray_dir: str) -> dict[int, float]:
    """PID -> start time of the driver's children that name `ray_dir` on their command line, and of their descendants."""
    found: dict[int, float] = {}
    for child in driver.children():
        try:
            if child.pid == os.getpid() or not any(ray_dir in arg for arg in child.cmdline()):
                continue  # the watchdog names the folder too
            for process in (child, *child.children(recursive=True)):
                found[process.pid] = process.create_time()
        except psutil.Error:  # ended while being looked at
            continue
    return found


def kill(processes: Mapping[int, float]) -> list[psutil.Process]:
    """SIGKILL each process that still runs with the recorded start time (and what it started since), and
    wait for them to end; returns them."""
    killed = []
    for pid, started in processes.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() != started or process.status() == psutil.STATUS_ZOMBIE:
                continue  # the PID now belongs to another process, or it has ended and awaits its parent
            for each in (*process.children(recursive=True), process):
                each.kill()
                killed.append(each)
        except psutil.Error:
            continue
    psutil.wait_procs(killed, timeout=5)
    return killed


def watch(driver_pid: int, ray_dir: str, pipe: BinaryIO) -> None:
    """Record the driver's Ray processes until `pipe` ends, then kill what is left of them and remove `ray_dir`."""
    seen: dict[int, float] = {}
    try:
        driver = psutil.Process(driver_pid)
        while True:
            readable, _, _ = select.select([pipe], [], [], POLL_S)
            if readable and not os.read(pipe.fileno(), 4096):
                break
            seen.update(ray_processes(driver, ray_dir))
    except psutil.NoSuchProcess:
        pass  # the driver is gone and its pipe not yet seen closed: the same ending
    kill(seen)
    shutil.rmtree(ray_dir, ignore_errors=True)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2], sys.stdin.buffer)
