"""What an evaluation of each rank, entropy and heavy-tail measure costs, in training steps of the same stack.

    python benchmarks/bench_spectra.py [--repeats 5] [--runs 1,8]

Workloads: nanda-modadd's transformer ((a + b) mod 113 at 30%, full batch) and modular-addition's Gromov MLP, a
stack of K runs each. Each measure is called on the stack's probe as the recorder calls it (one batched call for
the whole stack); the training step is the stack's own. Medians of interleaved repeats. A measure costing c steps
at measures.every = m evaluations of eval_every = e steps adds c / (m e) to the run's time.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date

import torch

from groklab.config import expand_runs, resolve_spec
from groklab.engine.plan import cpu_count
from groklab.engine.stack import Stack
from groklab.measures import MEASURES

NAMES = ["effective_rank", "spectral_entropy", "feature_rank", "htsr_alpha", "correlation_traps"]
WORKLOADS = {
    "nanda-modadd (transformer, p 113)": "nanda-modadd",
    "modular-addition (Gromov MLP, p 97)": "modular-addition",
}


def _seconds(fn: Callable[[], object], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _calls(stack: Stack) -> dict[str, Callable[[], object]]:
    """The stack's training step, and each measure called on its probe."""
    counter = iter(range(10**9))
    calls: dict[str, Callable[[], object]] = {"step": lambda: stack.train_step(next(counter))}
    return calls | {name: (lambda name=name: MEASURES[name].fn(stack.probe(0))) for name in NAMES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", default="1,8", help="stack sizes")
    args = parser.parse_args()
    torch.set_num_threads(cpu_count())
    print(f"{date.today()}  {platform.machine()}, {cpu_count()} cores, torch {torch.__version__}")
    print(f"| workload | K | train step ms | {' | '.join(NAMES)} |")
    print("|---|---|---|" + "---|" * len(NAMES))
    for label, spec in WORKLOADS.items():
        for k in (int(k) for k in args.runs.split(",")):
            config = expand_runs(resolve_spec(spec, ["seeds=1"]))[0]
            calls = _calls(Stack([(f"r{i}", config.model_copy(update={"seed": i})) for i in range(k)]))
            for fn in calls.values():
                fn()  # warm up
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.repeats):  # interleaved, so machine noise hits all alike
                for name, fn in calls.items():
                    times[name].append(_seconds(fn, 2))
            step = statistics.median(times["step"])
            cells = [f"{statistics.median(times[n]) * 1e3:.0f} ms ({statistics.median(times[n]) / step:.1f} steps)"
                     for n in NAMES]  # fmt: skip
            print(f"| {label} | {k} | {step * 1e3:.1f} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
