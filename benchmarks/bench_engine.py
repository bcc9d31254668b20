"""Engine throughput vs a plain PyTorch loop, side by side in one run (ratios, not absolute times).

    python benchmarks/bench_engine.py [--steps 20] [--ks 1,8,64] [--threads N]

Workloads: the Gromov MLP (p=97, width 500, x^2, full batch, MSE, AdamW) and the seed-001 parity net
(n=50, 300 examples, width 500, ReLU, full batch, cross-entropy, SGD). The plain loop is written the way
research repositories write it: an nn.Module on one-hot float inputs, torch.optim, zero_grad/backward/step,
one model at a time (so its cost per run does not depend on K). groklab trains K runs as one stack.
Both are timed on the training step only (neither evaluates inside the step); each measurement is the
median of interleaved repeats. "GFLOP/s" counts the FLOPs each implementation executes: the plain
loop multiplies one-hot vectors (6 B (2p N + N p)), groklab gathers rows instead (6 B N p + gather), so
for the modular MLP groklab executes ~3x fewer FLOPs; "model GFLOP/s" divides the network's dense FLOPs
(the plain loop's count) by groklab's time, the usual model-FLOPs-utilization convention.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date

import torch
import torch.nn.functional as F

from groklab import RunConfig
from groklab.engine.captured import CapturedStep
from groklab.engine.plan import cpu_count
from groklab.engine.stack import Stack

GROMOV = {
    "task": {"name": "modular", "modulus": 97, "train_fraction": 0.5},
    "model": {"name": "mlp", "width": 500, "activation": "quadratic", "bias": False, "init": "gromov"},
    "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 5.0, "betas": [0.9, 0.98]},
    "train": {"loss": "mse"},
}
PARITY = {
    "task": {"name": "parity", "n_bits": 50, "k": 2, "n_train": 300, "n_test": 100},
    "model": {"name": "mlp", "width": 500, "activation": "relu"},
    "optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0.01},
    "train": {"loss": "cross_entropy"},
}


def matmul_peak(n: int = 2048, repeats: int = 8) -> float:
    """Measured float32 matmul GFLOP/s on this machine (best of repeats)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = min(_time(lambda: a @ b, 1) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _time(fn: Callable[[], object], steps: int) -> float:
    """Seconds per call; on a GPU the queued work is waited for before the clock is read, both ends."""
    _synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _synchronize()
    return (time.perf_counter() - start) / steps


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class PlainModular(torch.nn.Module):
    """Gromov's network as research code writes it: Linear on one-hot(a) | one-hot(b)."""

    def __init__(self, p: int, width: int) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(2 * p, width, bias=False)
        self.fc2 = torch.nn.Linear(width, p, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) ** 2)


def plain_step_fn(spec: dict, config: RunConfig, device: str = "cpu") -> tuple[Callable[[], None], float]:
    """A plain one-model training step and the FLOPs it executes."""
    stack = Stack([("plain", config)], torch.device(device))  # borrow the data
    x, y = stack.runs.x_train[0], stack.runs.y_train[0]
    if spec is GROMOV:
        p, width = config.task.modulus, config.model.width
        x = torch.cat([F.one_hot(x[:, 0], p), F.one_hot(x[:, 1], p)], dim=1).float()
        model: torch.nn.Module = PlainModular(p, width).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=5.0, betas=(0.9, 0.98))
        target = F.one_hot(y, p).float()

        def loss_fn() -> torch.Tensor:
            return F.mse_loss(model(x), target)

        flops = 6 * len(x) * (2 * p * width + width * p)
    else:
        width = config.model.width
        model = torch.nn.Sequential(torch.nn.Linear(50, width), torch.nn.ReLU(), torch.nn.Linear(width, 2)).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.01)

        def loss_fn() -> torch.Tensor:
            return F.cross_entropy(model(x), y)

        flops = 6 * len(x) * (50 * width + width * 2)

    def step() -> None:
        opt.zero_grad()
        loss_fn().backward()
        opt.step()

    return step, flops


def engine_step_fn(
    config: RunConfig, k: int, device: str = "cpu", captured: bool = False
) -> tuple[Callable[[], None], float]:
    """A groklab training step of a stack of k runs (`captured`: replayed as a CUDA graph, engine/captured.py) and
    the FLOPs it executes per run."""
    runs = [(f"r{i}", config.model_copy(update={"seed": i})) for i in range(k)]
    stack = Stack(runs, torch.device(device))
    stack.captured = CapturedStep.for_stack(stack) if captured else None
    counter = iter(range(10**9))

    def step() -> None:
        stack.train_step(next(counter))

    n, width = stack.runs.x_train.shape[1], config.model.width
    if config.task.name == "modular":
        flops = 6 * n * width * config.task.modulus + 2 * 2 * n * width  # W_out matmuls + gather-sum and its backward
    else:
        flops = 6 * n * (50 * width + width * 2)
    return step, flops


def measure(steps: int, ks: list[int], repeats: int = 5) -> list[dict]:
    rows = []
    for name, spec in (("Gromov MLP p=97 N=500", GROMOV), ("parity net n=50 N=500", PARITY)):
        config = RunConfig.model_validate(spec)
        plain, plain_flops = plain_step_fn(spec, config)
        engines = {k: engine_step_fn(config, k) for k in ks}
        for fn in [plain] + [e[0] for e in engines.values()]:
            _time(fn, 2)  # warm up
        plain_times, engine_times = [], {k: [] for k in ks}
        for _ in range(repeats):  # interleave so machine noise hits both alike
            plain_times.append(_time(plain, steps))
            for k, (fn, _) in engines.items():
                engine_times[k].append(_time(fn, max(1, steps // k)) / k)
        t_plain = statistics.median(plain_times)
        for k in ks:
            t_engine = statistics.median(engine_times[k])
            rows.append(
                {
                    "workload": name,
                    "K": k,
                    "plain_ms": t_plain * 1e3,
                    "groklab_ms": t_engine * 1e3,
                    "speedup": t_plain / t_engine,
                    "plain_gflops": plain_flops / t_plain / 1e9,
                    "groklab_gflops": engines[k][1] / t_engine / 1e9,
                    "model_gflops": plain_flops / t_engine / 1e9,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16, help="steps per timing (divided by K for stacks)")
    parser.add_argument("--ks", default="1,8,64", help="stack sizes")
    parser.add_argument("--threads", type=int, default=cpu_count(), help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak_before = matmul_peak()
    rows = measure(args.steps, [int(k) for k in args.ks.split(",")])
    peak = max(peak_before, matmul_peak())  # best of two, around the workloads: the machine is shared
    print(
        f"{date.today()}  {platform.processor() or platform.machine()}, {cpu_count()} cores, "
        f"{args.threads} threads, torch {torch.__version__}; float32 matmul peak {peak:.0f} GFLOP/s"
    )
    print(
        "| workload | K | plain loop ms/run-step | groklab ms/run-step | groklab speedup "
        "| plain GFLOP/s (% of peak) | groklab GFLOP/s (% of peak) | groklab model GFLOP/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workload']} | {r['K']} | {r['plain_ms']:.2f} | {r['groklab_ms']:.2f} | {r['speedup']:.2f}x "
            f"| {r['plain_gflops']:.0f} ({100 * r['plain_gflops'] / peak:.0f}%) "
            f"| {r['groklab_gflops']:.0f} ({100 * r['groklab_gflops'] / peak:.0f}%) | {r['model_gflops']:.0f} |"
        )


if __name__ == "__main__":
    main()
