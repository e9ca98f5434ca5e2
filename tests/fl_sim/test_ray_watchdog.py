"""The watchdog of a federation's Ray (fl_sim/ray_watchdog.py): when the driver dies by SIGKILL, the
processes that name its Ray folder, and their descendants, are killed and the folder removed; the
driver's other children are left alone. Ray itself is stood in for by plain processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

# The driver: starts the watchdog as `ray_session` does, a "Ray service" that names the folder and starts
# a "worker" that does not (as the raylet starts its agents and workers), and a bystander child.
DRIVER = """
import subprocess, sys, time
from pathlib import Path
from fl_sim.ray_session import start_watchdog

folder = Path(sys.argv[1])
folder.mkdir()
(folder / "session_1").mkdir()
watchdog = start_watchdog(folder)
service_code = (
    "import subprocess, sys, time; "
    "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
    "print(worker.pid, flush=True); time.sleep(600)"
)
service = subprocess.Popen([sys.executable, "-c", service_code, f"--temp-dir={folder}"], stdout=subprocess.PIPE, text=True)
worker = int(service.stdout.readline())
bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(watchdog.pid, service.pid, worker, bystander.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_for(condition, seconds: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_sigkilled_driver_leaves_no_ray_process_and_no_folder(tmp_path: Path) -> None:
    folder = tmp_path / "flaudit-ray-test"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert driver.stdout is not None
    watchdog, service, worker, bystander = map(int, driver.stdout.readline().split())
    try:
        time.sleep(2)  # the watchdog records the driver's Ray processes every 0.2 s
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert _wait_for(lambda: _gone(watchdog))
        assert _gone(service) and _gone(worker)
        assert not folder.exists()
        assert not _gone(bystander)  # not Ray's: it names no Ray folder
    finally:
        for pid in (service, worker, bystander, watchdog):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
