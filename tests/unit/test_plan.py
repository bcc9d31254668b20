"""The planner: who shares a stack, and how big stacks get per device."""

from __future__ import annotations

from groklab import expand_runs
from groklab.config import parse_experiment
from groklab.engine.cores import CpuBudget
from groklab.engine.plan import make_plan


def _ids(spec: dict) -> list[tuple[str, object]]:
    return [(f"r{i}", c) for i, c in enumerate(expand_runs(parse_experiment(spec)))]


def test_per_run_keys_share_a_stack_shape_keys_do_not() -> None:
    parity = {"task": {"name": "parity", "n_bits": 10, "k": 2}, "model": {"width": 16}, "seeds": 3}
    runs = _ids({**parity, "sweep": {"optimizer.lr": [0.1, 0.2], "task.label_noise": [0.0, 0.1]}})
    assert [len(s) for s in make_plan(runs).stacks] == [12]
    runs = _ids({**parity, "sweep": {"model.width": [16, 32]}})
    plan = make_plan(runs)
    assert sorted(len(s) for s in plan.stacks) == [3, 3]
    assert all(len({c.model.width for _, c in s}) == 1 for s in plan.stacks)


def test_large_runs_are_not_stacked_on_cpu_but_are_on_gpu() -> None:
    gromov = {"task": {"modulus": 97}, "model": {"width": 500}, "seeds": 4}
    assert [len(s) for s in make_plan(_ids(gromov)).stacks] == [1, 1, 1, 1]
    assert [len(s) for s in make_plan(_ids(gromov), device="cuda").stacks] == [4]
    # On a GPU stacks hold up to 256 runs, fewer where a tensor of the stack would reach 2^31 elements.
    many = {**gromov, "seeds": 600}
    assert [len(s) for s in make_plan(_ids(many), device="cuda").stacks] == [256, 256, 88]
    wide = {**many, "model": {**gromov["model"], "width": 2000}}  # 97^2 x 2000 = 1.9e7 elements a run
    assert [len(s) for s in make_plan(_ids(wide), device="cuda").stacks][:2] == [114, 114]
    small = {"task": {"name": "parity"}, "seeds": 20}
    assert [len(s) for s in make_plan(_ids(small)).stacks] == [16, 4]
    assert make_plan(_ids(small)).workers == 1 and make_plan(_ids(small), workers=2).workers == 2


def test_many_large_cpu_runs_get_a_process_per_core(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(
        "groklab.engine.plan.cpu_budget", lambda threads=None: CpuBudget(min(2, threads or 2), "affinity")
    )
    gromov = {"task": {"modulus": 97}, "model": {"width": 500}, "train": {"steps": 2000}, "seeds": 4}
    plan = make_plan(_ids(gromov))  # 4 x 2,000 steps x 1.4 GFLOP: worth two processes
    assert (plan.workers, plan.threads) == (2, 1)
    assert make_plan(_ids({**gromov, "seeds": 1})).workers == 1  # one run: both cores as threads
    assert make_plan(_ids({**gromov, "train": {"steps": 500}})).workers == 1  # short: not worth the start
    assert make_plan(_ids(gromov), workers=1).threads == 2  # the user's choice wins
