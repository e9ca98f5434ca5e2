"""The quickstart's wall time on an idle machine and beside another CPU-bound 2-thread process.

    python benchmarks/quickstart_under_load.py [--repeats 2] [-- extra flaudit flags, e.g. --threads 1]

Each repeat runs `flaudit -q run scenarios/quickstart.yaml` into a fresh run directory twice:
once with the machine otherwise idle, once while a second process runs a 2-thread matrix
multiplication loop (torch, 2 OpenMP threads: the kind of neighbour a shared machine has).
The forms alternate so that drift in the machine's speed hits both. The last line is
`loaded_over_idle: X.XX` (median loaded time / median idle time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LOAD = """
import os, time, torch
torch.set_num_threads(2)
a = torch.randn(1024, 1024)
end = time.time() + float(os.environ["LOAD_SECONDS"])
while time.time() < end:
    a = (a @ a).clamp_(-1, 1)
"""


def quickstart(run_dir: Path, extra: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.cli", "-q", *extra, "run", "scenarios/quickstart.yaml", "--run-dir", str(run_dir)],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("extra", nargs="*", help="flags for flaudit before `run` (after --), e.g. --threads 1")
    args = parser.parse_args()
    idle, loaded = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            idle.append(quickstart(Path(tmp) / f"idle{repeat}", args.extra))
            env = dict(os.environ, LOAD_SECONDS="3600", OMP_NUM_THREADS="2")
            load = subprocess.Popen([sys.executable, "-c", LOAD], env=env)
            try:
                time.sleep(2)  # let the neighbour reach full speed
                loaded.append(quickstart(Path(tmp) / f"loaded{repeat}", args.extra))
            finally:
                load.kill()
                load.wait()
            print(f"repeat {repeat}: idle {idle[-1]:.1f} s, loaded {loaded[-1]:.1f} s", flush=True)
    idle_s, loaded_s = statistics.median(idle), statistics.median(loaded)
    print(f"idle_s: {idle_s:.1f}")
    print(f"loaded_s: {loaded_s:.1f}")
    print(f"loaded_over_idle: {loaded_s / idle_s:.2f}")


if __name__ == "__main__":
    main()
