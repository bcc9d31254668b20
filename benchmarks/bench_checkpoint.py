"""Cost of checkpoints: the time to save a stack's checkpoint and to resume from it, next to its training step.

    python benchmarks/bench_checkpoint.py [--repeats 5]

For built-in stacks (nanda-modadd and power-division: one transformer run; modular-addition: one Gromov MLP
run; parity: a stack of 16), the median time of one training step, of one checkpoint save (the whole stack
state written atomically to a temporary directory), of reading its header (how the store decides whose it is)
and of a resume (the file read once, its state put into a freshly built stack). Overhead at the default
interval (every ~300 s of wall time: engine/loop.py CHECKPOINT_SECONDS) = save / 300 s; also per 1,000 steps.
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
from groklab.engine.checkpoint import load, read_header, save
from groklab.engine.loop import CHECKPOINT_SECONDS, LoopState, checkpoint_of, resume_from
from groklab.engine.milestones import Milestones
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
    columns = ["stack", "runs", "step ms", "checkpoint ms", "MB", "header ms", "resume ms", "overhead every 300 s",
               "per 1,000 steps"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, runs in WORKLOADS.items():
        configs = expand_runs(resolve_spec(name, [f"seeds={runs}"]))
        stack = Stack([(f"r{i}", c) for i, c in enumerate(configs)], "cpu")
        runs = list(zip(stack.runs.ids, configs))
        recorder = Recorder(stack.runs.ids, configs[0])
        milestones = {run_id: Milestones.of(c) for run_id, c in runs}
        for step in range(3):
            stack.train_step(step)
        steps, saves, headers, resumes = [], [], [], []
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "stack.pt"
            for repeat in range(args.repeats):
                start = time.perf_counter()
                stack.train_step(3 + repeat)
                steps.append(time.perf_counter() - start)
                start = time.perf_counter()
                save(path, checkpoint_of(LoopState(4 + repeat, [10**6]), stack, recorder, milestones))
                saves.append(time.perf_counter() - start)
                start = time.perf_counter()
                read_header(path)
                headers.append(time.perf_counter() - start)
                fresh = Stack(runs, "cpu")  # built before the clock starts: a resume builds it either way
                fresh_milestones = {run_id: Milestones.of(c) for run_id, c in runs}
                start = time.perf_counter()
                resume_from(load(path), fresh, Recorder(fresh.runs.ids, configs[0]), fresh_milestones)
                resumes.append(time.perf_counter() - start)
            size = path.stat().st_size / 2**20
        step_s, save_s = statistics.median(steps), statistics.median(saves)
        header_s, resume_s = statistics.median(headers), statistics.median(resumes)
        print(
            f"| {name} | {len(runs)} | {step_s * 1e3:.1f} | {save_s * 1e3:.1f} | {size:.1f} | {header_s * 1e3:.2f} | "
            f"{resume_s * 1e3:.1f} | {100 * save_s / CHECKPOINT_SECONDS:.3f}% | {100 * save_s / (1000 * step_s):.2f}% |"
        )


if __name__ == "__main__":
    main()
