"""How fast the command line answers: median wall time of 10 runs of each light command.

    python benchmarks/cli_startup.py

Runs the installed `flaudit` script as a user would. The last line is `help_s: X.XXX`.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "version": ["--version"],
    "validate": ["validate", *sorted(str(p) for p in (REPO / "scenarios").glob("*.yaml"))],
    "doctor_packages": ["doctor", "--packages"],
    "help": ["--help"],
}


def median_seconds(argv: list[str], runs: int = 10) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    script = shutil.which("flaudit")
    base = [script] if script else [sys.executable, "-m", "pipeline.cli"]
    for name, args in COMMANDS.items():
        print(f"{name}_s: {median_seconds(base + args):.3f}")


if __name__ == "__main__":
    main()
