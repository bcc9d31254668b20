"""A training step on a quiet machine and on a busy one, with torch's default threads and with one.

    python benchmarks/bench_threads.py [--steps 40] [--hogs 2]

The busy machine is this one with `--hogs` busy-loop processes beside the benchmark (what other users' jobs, or a
test suite, do to a shared machine). For the modular-addition built-in (Gromov's MLP, p = 97, one run), the
median time of a groklab training step and of the same step in plain PyTorch (one-hot inputs, a quadratic
hidden layer, MSE, AdamW), with as many torch threads as the CPU budget allows and with one. Threads that find
no free core wait for each other at every parallel region: on a busy machine one thread is the faster choice,
which is what `--threads 1` (or OMP_NUM_THREADS=1) gives a run (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date

import torch

from groklab.config import expand_runs, resolve_spec
from groklab.engine.cores import cpu_budget
from groklab.engine.stack import Stack


def _hog() -> None:
    while True:  # a busy loop: one core's worth of someone else's work
        pass


def _groklab_step() -> Callable[[], None]:
    (config,) = expand_runs(resolve_spec("modular-addition", ["seeds=1"]))
    stack = Stack([("r0", config)], "cpu")
    steps = iter(range(10**9))
    return lambda: stack.train_step(next(steps))


def _plain_step() -> Callable[[], None]:
    """Gromov's MLP on (a + b) mod 97 in plain PyTorch: the reference the groklab step is measured beside."""
    p, width = 97, 500
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.cat([torch.nn.functional.one_hot(a.flatten(), p), torch.nn.functional.one_hot(b.flatten(), p)], 1).float()
    y = torch.nn.functional.one_hot((a + b).flatten() % p, p).float()
    W_in = torch.nn.Parameter(torch.randn(2 * p, width) / (2 * p) ** 0.5)
    W_out = torch.nn.Parameter(torch.randn(width, p) / width)
    optimizer = torch.optim.AdamW([W_in, W_out], lr=1e-3, weight_decay=1.0)

    def step() -> None:
        optimizer.zero_grad()
        loss = (((x @ W_in) ** 2 @ W_out - y) ** 2).mean()
        loss.backward()
        optimizer.step()

    return step


def _median_ms(step: Callable[[], None], steps: int) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--hogs", type=int, default=2, help="busy-loop processes on the busy machine")
    args = parser.parse_args()
    budget = cpu_budget()
    machine = platform.processor() or platform.machine()
    print(f"{date.today()}  {machine}, {budget.cores} cores ({budget.limited_by}), torch {torch.__version__}")
    print("| machine | torch threads | groklab step ms | plain PyTorch step ms |")
    print("|---|---|---|---|")
    for busy in (False, True):
        hogs = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(args.hogs if busy else 0)]
        for hog in hogs:
            hog.start()
        try:
            for threads in sorted({budget.cores, 1}, reverse=True):
                torch.set_num_threads(threads)
                ours, plain = _median_ms(_groklab_step(), args.steps), _median_ms(_plain_step(), args.steps)
                label = f"busy ({args.hogs} busy loops)" if busy else "quiet"
                print(f"| {label} | {threads} | {ours:.1f} | {plain:.1f} |", flush=True)
        finally:
            for hog in hogs:
                hog.kill()


if __name__ == "__main__":
    main()
