"""Cost of checkpoints: the time to save a stack's checkpoint next to its training step, side by side.

    python benchmarks/bench_checkpoint.py [--repeats 5]

For built-in stacks (nanda-modadd and power-division: one transformer run; modular-addition: one Gromov MLP
run; parity: a stack of 16), the median time of one training step and of one checkpoint save (the whole
stack state written atomically to a temporary directory). Overhead at the default interval (every ~300 s of
wall time: engine/loop.py CHECKPOINT_SECONDS) = save / 300 s; also shown per 1,000 steps.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from groklab.config import expand_runs, resolve_spec
from groklab.engine.checkpoint import save, stack_state
from groklab.engine.events import RunEvents
from groklab.engine.loop import CHECKPOINT_SECONDS
from groklab.engine.plan import cpu_count
from groklab.engine.recorder import Recorder
from groklab.engine.stack import Stack

WORKLOADS = {"nanda-modadd": 1, "power-division": 1, "modular-addition": 1, "parity": 16}  # spec: runs stacked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(cpu_count())
    machine = platform.processor() or platform.machine()
    print(f"{date.today()}  {machine}, {cpu_count()} cores, torch {torch.__version__}")
    print("| stack | runs | step ms | checkpoint ms | MB | overhead every 300 s | per 1,000 steps |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in WORKLOADS.items():
        configs = expand_runs(resolve_spec(name, [f"seeds={runs}"]))
        stack = Stack([(f"r{i}", c) for i, c in enumerate(configs)], "cpu")
        recorder = Recorder(stack.ids, configs[0])
        events = {run_id: RunEvents(c.train.steps, None) for run_id, c in zip(stack.ids, configs)}
        loss = configs[0].train.loss
        for step in range(3):
            stack.train_step(step, loss)
        steps, saves = [], []
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "stack.pt"
            for repeat in range(args.repeats):
                start = time.perf_counter()
                stack.train_step(3 + repeat, loss)
                steps.append(time.perf_counter() - start)
                start = time.perf_counter()
                loop = {"step": 4 + repeat, "schedule": [10**6], "last_eval": 0, "elapsed": 0.0}
                save(path, stack_state(stack, recorder, events, loop))
                saves.append(time.perf_counter() - start)
            size = path.stat().st_size / 2**20
        step_s, save_s = statistics.median(steps), statistics.median(saves)
        print(
            f"| {name} | {runs} | {step_s * 1e3:.1f} | {save_s * 1e3:.1f} | {size:.1f} | "
            f"{100 * save_s / CHECKPOINT_SECONDS:.3f}% | {100 * save_s / (1000 * step_s):.2f}% |"
        )


if __name__ == "__main__":
    main()
