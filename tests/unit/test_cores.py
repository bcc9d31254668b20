"""The CPU budget: the smallest of affinity, cgroup quota, OMP_NUM_THREADS, SLURM_CPUS_PER_TASK and --threads, and
a plan that never gives a stack more torch threads than it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from groklab import expand_runs
from groklab.config import SpecError, parse_experiment
from groklab.engine import cores
from groklab.engine.cores import cgroup_quota, cpu_budget
from groklab.engine.plan import make_plan


@pytest.fixture(autouse=True)
def no_budget_from_outside(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The variables as a plain shell has them, and no quota: each test sets what it checks."""
    for name in cores.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cores, "cgroup_quota", lambda: None)
    yield


def test_every_source_of_a_budget_limits_it_and_the_smallest_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores, "affinity", lambda: 8)
    assert cpu_budget() == cores.CpuBudget(8, "affinity")
    monkeypatch.setattr(cores, "cgroup_quota", lambda: 6)
    assert cpu_budget() == cores.CpuBudget(6, "cgroup quota")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    assert cpu_budget() == cores.CpuBudget(4, "SLURM_CPUS_PER_TASK")
    monkeypatch.setenv("OMP_NUM_THREADS", "3,1")  # OpenMP's nested form: the outer level counts
    assert cpu_budget() == cores.CpuBudget(3, "OMP_NUM_THREADS")
    assert cpu_budget(threads=2) == cores.CpuBudget(2, "--threads")
    assert cpu_budget(threads=16).cores == 3  # asking for more than the budget gives the budget


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux's affinity mask")
def test_the_affinity_mask_is_the_cores_a_process_may_run_on() -> None:
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})  # what taskset -c 0 does
        assert cpu_budget() == cores.CpuBudget(1, "affinity")
    finally:
        os.sched_setaffinity(0, before)
    assert cpu_budget().cores == len(before)


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "200000 100000\n"}, 2),
    ({"cpu.max": "150000 100000\n"}, 1),  # 1.5 cores: one thread, never more threads than whole cores
    ({"cpu.max": "5000 100000\n"}, 1),  # a twentieth of a core: still one
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # cgroup v1, no quota
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
    ({"cpu.max": "garbage\n"}, None),
    ({}, None),
])  # fmt: skip
def test_a_cgroup_quota_is_whole_cores(tmp_path: Path, files: dict[str, str], expected: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_quota(tmp_path) == expected


@pytest.mark.parametrize("value", ["abc", "0", "-2", "2.5", ",4"])
@pytest.mark.parametrize("name", cores.ENVIRONMENT)
def test_a_variable_that_is_not_a_number_of_threads_is_one_line(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SpecError, match=f"^{name}=.*: not a number of threads; allowed: a whole number >= 1"):
        cpu_budget()


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_threads_must_be_a_whole_number_of_at_least_one(threads: object) -> None:
    with pytest.raises(SpecError, match="^--threads .*allowed: a whole number >= 1"):
        cpu_budget(threads)  # type: ignore[arg-type]


def test_a_plan_never_gives_more_threads_than_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores, "affinity", lambda: 8)
    gromov = {"task": {"modulus": 97}, "model": {"width": 500}, "train": {"steps": 2000}, "seeds": 4}
    runs = [(f"r{i}", c) for i, c in enumerate(expand_runs(parse_experiment(gromov)))]
    assert (make_plan(runs).workers, make_plan(runs).threads) == (4, 2)  # a process per stack, the cores shared
    plan = make_plan(runs, threads=2)
    assert plan.workers * plan.threads == 2 and plan.describe()["cpu_budget"] == "2 (--threads)"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert (make_plan(runs).workers, make_plan(runs).threads) == (1, 1)
    assert make_plan(runs, workers=1).threads == 1
