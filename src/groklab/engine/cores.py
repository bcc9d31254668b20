"""The CPU budget a process is given: how many cores groklab's torch threads may use in all.

torch starts one thread per core it sees, but a process is often given fewer than the machine has: an affinity
mask (taskset, SLURM's task binding), a cgroup quota (docker --cpus, a Kubernetes limit, SLURM's cgroups: cpu.max),
or a count in the environment (OMP_NUM_THREADS, SLURM_CPUS_PER_TASK); `--threads N` says it outright. groklab
takes the smallest of these and never gives its stacks more threads than that in all (engine/plan.py divides
it among worker processes). More threads than cores to run them wait for each other: a step of a Gromov
MLP took 4.7x as long with 2 threads as with 1 on a 2-core machine with six busy processes beside it
(docs/cluster.md, benchmarks/bench_threads.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from groklab.errors import SpecError

ENVIRONMENT = ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")
"""Variables that give a process a number of cores (read in this order; the smallest wins)."""


@dataclass(frozen=True)
class CpuBudget:
    """How many cores the process may use, and what set that number."""

    cores: int
    limited_by: str
    """'--threads', 'OMP_NUM_THREADS', 'SLURM_CPUS_PER_TASK', 'cgroup quota' or 'affinity'."""


def cpu_budget(threads: int | None = None) -> CpuBudget:
    """The smallest of the cores this process may run on, its cgroup quota, OMP_NUM_THREADS, SLURM_CPUS_PER_TASK and
    `threads` (--threads). SpecError for a variable that is not a whole number of threads >= 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise SpecError(f"--threads {threads!r:.40}: allowed: a whole number >= 1 (default: every core it may use)")
    found = [CpuBudget(affinity(), "affinity")]
    if (quota := cgroup_quota()) is not None:
        found.append(CpuBudget(quota, "cgroup quota"))
    for name in ENVIRONMENT:
        if (count := environment_count(name)) is not None:
            found.append(CpuBudget(count, name))
    if threads is not None:
        found.append(CpuBudget(threads, "--threads"))
    return min(found, key=lambda budget: budget.cores)


def affinity() -> int:
    """The cores this process may be scheduled on (its affinity mask; every core where there is none: macOS)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Whole cores of this process's cgroup CPU quota (quota / period, rounded down, at least 1), or None where
    there is none. cgroup v2: cpu.max ("max 100000" is none, "150000 100000" 1.5 cores); v1: cpu.cfs_quota_us
    (-1 is none) over cpu.cfs_period_us.

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "cpu.max").write_text("150000 100000\\n"); cgroup_quota(folder)
    1
    >>> _ = (folder / "cpu.max").write_text("max 100000\\n"); cgroup_quota(folder) is None
    True
    """
    for folder in (root / _own_cgroup(), root):
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else _cores(quota, period)
    for folder in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota, period = ((folder / f"cpu.cfs_{n}_us").read_text().strip() for n in ("quota", "period"))
        except OSError:
            continue
        return None if quota.startswith("-") else _cores(quota, period)
    return None


def _own_cgroup() -> str:
    """This process's cgroup v2 path (/proc/self/cgroup: "0::/PATH"), relative; '' where unknown."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:].lstrip("/")
    except OSError:
        pass
    return ""


def _cores(quota: str, period: str) -> int | None:
    try:
        return max(1, math.floor(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None  # unreadable: as if there were no quota


def environment_count(name: str) -> int | None:
    """A count of threads from the environment (OMP_NUM_THREADS' first level: "4,2" is 4), or None if unset;
    SpecError when it is not a whole number >= 1."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    first = text.split(",")[0].strip()
    if not first.isdigit() or int(first) < 1:
        raise SpecError(f"{name}={text[:40]}: not a number of threads; allowed: a whole number >= 1 (or unset)")
    return int(first)
