"""How many CPU threads this process uses, chosen on purpose.

PyTorch's default is one OpenMP thread per core of the machine, whatever share of it the
process may use: under `taskset`, a cgroup CPU quota (containers, Slurm, Kubernetes) or beside
other busy processes, that oversubscribes the cores and spinning OpenMP workers then cost
more than they give. flaudit instead uses the cores this process may run on, unless told:

1. `--threads N` on the command line,
2. `threads: N` in the scenario,
3. `OMP_NUM_THREADS`, the variable every OpenMP program honours,
4. the CPUs this process may use (`sched_getaffinity`, capped by a cgroup CPU quota).

The attack and the audit in the driver use that many torch threads; the federation gives Ray
that many CPUs, and each simulated client uses the threads of the CPUs it was given
(`federation.client_cpus`).

The OpenMP workers of PyTorch's Linux wheels (GNU libgomp) spin-wait 300,000 iterations at
every barrier before they sleep. The attacks run thousands of small parallel regions a second,
so beside another busy process a worker that lost its core keeps the others spinning: an iDLG
attack took 82 s beside a 2-thread neighbour against 12 s idle. `short_openmp_spin()` lowers the
spin to 1,000 iterations (`GOMP_SPINCOUNT`, unless the user set it or `OMP_WAIT_POLICY`): 29 s
under the same load, and no slower idle (measured in this project's README).
"""

from __future__ import annotations

import math
import os
from pathlib import Path


#: libgomp's spin count at barriers before a worker sleeps (its default is 300,000).
OPENMP_SPIN_COUNT = "1000"


def short_openmp_spin() -> None:
    """Shorten OpenMP's spin-wait for this process and its children; call before torch is imported."""
    if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota; at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, quota)
    return max(1, count)


def _cgroup_quota() -> int | None:
    """ceil(quota / period) of the cgroup's CPU limit (v2 `cpu.max`, v1 `cfs_quota_us`), None if unlimited."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return max(1, math.ceil(int(text[0]) / int(text[1])))
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def resolve_threads(requested: int | None = None) -> int:
    """`requested` if given, else `OMP_NUM_THREADS` if it is a positive integer, else `available_cpus()`."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be >= 1, got {requested}")
        return requested
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    return available_cpus()


def use_threads(count: int) -> None:
    """Run this process's torch operations on `count` threads (intra-op)."""
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


def configure_threads(*requests: int | None) -> int:
    """Resolve the first non-None of `requests` (command line, then scenario) and use it; returns the count."""
    count = resolve_threads(next((r for r in requests if r is not None), None))
    use_threads(count)
    return count
