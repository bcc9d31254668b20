"""Cost of the progress measures: training wall time with the default measures vs none, same run.

    python benchmarks/bench_measures.py [--repeats 3]

Each workload trains a fixed number of steps of a built-in spec (its own evaluation schedule, early
stopping off), once with `measures.names: none` and once with `default` (and `all`), interleaved;
the table reports medians and the overhead relative to no measures (the default measures should cost a
few percent at the default schedule).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date

import torch

from groklab.config import expand_runs, resolve_spec
from groklab.engine.loop import train_stack
from groklab.engine.plan import cpu_count

WORKLOADS = {  # spec, steps, extra overrides
    "modular-addition (Gromov MLP, eval every 5)": ("modular-addition", 200, []),
    "nanda-modadd (eval every 100)": ("nanda-modadd", 400, []),
    "parity (eval every 50)": ("parity", 1000, []),
}


def _time(spec: str, steps: int, names: str) -> float:
    sets = [f"train.steps={steps}", "train.stop_after_generalized=null", f"measures.names={names}", "seeds=1"]
    config = expand_runs(resolve_spec(spec, sets))[0]
    start = time.perf_counter()
    train_stack([("r", config)])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(cpu_count())
    print(f"{date.today()}  {platform.machine()}, {cpu_count()} cores, torch {torch.__version__}")
    print("| workload | no measures s | default s | overhead | all s | overhead |")
    print("|---|---|---|---|---|---|")
    for label, (spec, steps, _) in WORKLOADS.items():
        times: dict[str, list[float]] = {"none": [], "default": [], "all": []}
        for _ in range(args.repeats):  # interleaved: machine noise hits all alike
            for names in times:
                times[names].append(_time(spec, steps, names))
        none, default, every = (statistics.median(times[n]) for n in ("none", "default", "all"))
        print(
            f"| {label}, {steps} steps | {none:.2f} | {default:.2f} | {100 * (default / none - 1):+.1f}% "
            f"| {every:.2f} | {100 * (every / none - 1):+.1f}% |"
        )


if __name__ == "__main__":
    main()
