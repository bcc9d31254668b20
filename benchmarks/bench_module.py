"""Your own module (model.name module) vs groklab's own stacked MLP vs a plain PyTorch loop, side by side in one run.

    python benchmarks/bench_module.py [--steps 16] [--ks 1,8,64] [--threads N]

The same networks as bench_engine.py (the Gromov MLP, p=97, N=500, x^2, MSE, AdamW; the parity net, n=50, N=500,
ReLU, cross-entropy, SGD), three ways: the plain loop (an nn.Module and torch.optim, one model at a time); groklab's
built-in MLP, K runs as one stack; and the network written as a researcher writes it, an nn.Module handed to
groklab as model.name module, K runs stacked through torch.func (functional_call under vmap). Training steps only,
medians of interleaved repeats, ms per run-step; the goals (issue 26): the module within 1.5x of groklab's own MLP
per run-step, and at least the plain loop's throughput from K = 8.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from collections.abc import Callable
from datetime import date

import torch
import torch.nn.functional as F
from bench_engine import GROMOV, PARITY, _time, engine_step_fn, plain_step_fn

from groklab import RunConfig
from groklab.engine.plan import cpu_count
from groklab.engine.stack import Stack


class OneHotGromov(torch.nn.Module):
    """Gromov's network written for one run, taking the task's pairs (batch, 2) as they come."""

    def __init__(self, p: int = 97, width: int = 500) -> None:
        super().__init__()
        self.p = p
        self.W_in = torch.nn.Linear(2 * p, width, bias=False)
        self.W_out = torch.nn.Linear(width, p, bias=False)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        x = torch.cat([F.one_hot(pairs[:, 0], self.p), F.one_hot(pairs[:, 1], self.p)], dim=1).float()
        h = self.W_in(x)
        return self.W_out(h * h)


def parity_net(width: int = 500) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(50, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))


def module_step_fn(spec: dict, k: int) -> Callable[[], None]:
    """A training step of a stack of k runs of the network as a user's module."""
    factory = OneHotGromov if spec is GROMOV else parity_net
    model = {"name": "module", "factory": factory, "kwargs": {}}
    config = RunConfig.model_validate({**spec, "model": model})
    stack = Stack([(f"r{i}", config.model_copy(update={"seed": i})) for i in range(k)], torch.device("cpu"))
    counter = iter(range(10**9))
    return lambda: stack.train_step(next(counter))


def measure(steps: int, ks: list[int], repeats: int = 5) -> list[dict]:
    rows = []
    for name, spec in (("Gromov MLP p=97 N=500", GROMOV), ("parity net n=50 N=500", PARITY)):
        config = RunConfig.model_validate(spec)
        plain, _ = plain_step_fn(spec, config)
        engines = {k: engine_step_fn(config, k)[0] for k in ks}
        modules = {k: module_step_fn(spec, k) for k in ks}
        for fn in [plain, *engines.values(), *modules.values()]:
            _time(fn, 2)  # warm up
        times: dict[str, list[float]] = {"plain": []} | {f"{w}{k}": [] for w in ("engine", "module") for k in ks}
        for _ in range(repeats):  # interleaved, so machine noise hits all alike
            times["plain"].append(_time(plain, steps))
            for k in ks:
                times[f"engine{k}"].append(_time(engines[k], max(1, steps // k)) / k)
                times[f"module{k}"].append(_time(modules[k], max(1, steps // k)) / k)
        median = {key: statistics.median(values) for key, values in times.items()}
        for k in ks:
            rows.append({"workload": name, "K": k, "plain": median["plain"], "engine": median[f"engine{k}"],
                         "module": median[f"module{k}"]})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16, help="steps per timing (divided by K for stacks)")
    parser.add_argument("--ks", default="1,8,64", help="stack sizes")
    parser.add_argument("--threads", type=int, default=cpu_count(), help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure(args.steps, [int(k) for k in args.ks.split(",")])
    print(f"{date.today()}  {platform.processor() or platform.machine()}, {cpu_count()} cores, {args.threads} threads, "
          f"torch {torch.__version__}")  # fmt: skip
    print("| workload | K | plain loop ms/run-step | groklab MLP | your module | module / groklab | plain / module |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workload']} | {r['K']} | {r['plain'] * 1e3:.2f} | {r['engine'] * 1e3:.2f} "
            f"| {r['module'] * 1e3:.2f} | {r['module'] / r['engine']:.2f}x | {r['plain'] / r['module']:.2f}x |"
        )


if __name__ == "__main__":
    main()
