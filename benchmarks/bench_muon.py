"""Muon's step over a stack (engine/muon.py) vs torch.optim.Muon + AdamW run by run, side by side in one run.

    python benchmarks/bench_muon.py [--steps 20] [--ks 1,8,64] [--threads N]

The optimizer step alone (gradients drawn once, reused) for Nanda et al.'s transformer (p = 113, d_model 128, 4
heads, d_mlp 512: six hidden matrices for Muon; the embeddings, the unembedding and the vectors for AdamW). The plain
side is what a research script does for K runs: K models, each with torch.optim.Muon on its matrices (in (out, in)
layout) and torch.optim.AdamW on the rest. groklab steps the K runs at once, the Newton-Schulz iteration one chain of
batched matmuls. Medians of interleaved repeats, ms per run-step.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from collections.abc import Callable
from datetime import date

import torch
from bench_engine import _time

from groklab import OptimizerConfig, RunConfig
from groklab.data import make_data
from groklab.engine.muon import MuonOptimizer, muon_layout
from groklab.engine.optim import hyperparameters
from groklab.engine.plan import cpu_count
from groklab.models import build_model

NANDA = {"task": {"name": "modular", "modulus": 113}, "model": {"name": "transformer"}}
OPTIMIZER = OptimizerConfig.model_validate({"name": "muon", "lr": 1e-3, "weight_decay": 1.0, "muon": {"lr": 0.02}})


def steps(k: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """groklab's step of a stack of k runs, and k runs' steps with torch.optim, on the same gradients."""
    config = RunConfig.model_validate(NANDA)
    model = build_model(config.model, make_data(config.task, 0))
    params = {n: torch.stack([model.init(seed)[n] for seed in range(k)]) for n in model.shapes()}
    grads = {n: torch.randn_like(p) for n, p in params.items()}
    indices = {n: torch.arange(p[0].numel()).view(p.shape[1:])[None] for n, p in params.items()}
    layout = muon_layout(model.matrices(indices), {*model.embeddings, *model.readout})
    hyper = hyperparameters([OPTIMIZER] * k, torch.device("cpu"), torch.float32)
    stacked = MuonOptimizer([OPTIMIZER] * k, params, hyper, layout)
    counter = iter(range(10**9))

    def groklab_step() -> None:
        stacked.step(params, grads, next(counter))

    plain = []
    for run in range(k):
        matrices = [torch.nn.Parameter(params[n][run].flatten()[i].T.clone()) for n, i in layout.items()]
        others = [torch.nn.Parameter(params[n][run].clone()) for n in params if n not in layout]
        for p, g in zip(matrices, (grads[n][run].flatten()[i].T.clone() for n, i in layout.items())):
            p.grad = g
        for p, n in zip(others, (n for n in params if n not in layout)):
            p.grad = grads[n][run].clone()
        plain.append(torch.optim.Muon(matrices, lr=0.02, weight_decay=1.0))
        plain.append(torch.optim.AdamW(others, lr=1e-3, weight_decay=1.0))

    def plain_step() -> None:
        for optimizer in plain:
            optimizer.step()

    return groklab_step, plain_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per timing (divided by K)")
    parser.add_argument("--ks", default="1,8,64", help="stack sizes")
    parser.add_argument("--threads", type=int, default=cpu_count(), help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{date.today()}  {platform.processor() or platform.machine()}, {cpu_count()} cores, {args.threads} threads, "
          f"torch {torch.__version__}")  # fmt: skip
    print("| K | torch.optim Muon + AdamW, ms/run-step | groklab Muon, ms/run-step | speedup |")
    print("|---|---|---|---|")
    for k in (int(k) for k in args.ks.split(",")):
        ours, theirs = steps(k)
        n = max(1, args.steps // k)
        _time(ours, 1), _time(theirs, 1)  # warm up
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        for _ in range(5):  # interleaved, so machine noise hits both alike
            times["ours"].append(_time(ours, n) / k)
            times["theirs"].append(_time(theirs, n) / k)
        ours_ms, theirs_ms = (statistics.median(times[key]) * 1e3 for key in ("ours", "theirs"))
        print(f"| {k} | {theirs_ms:.2f} | {ours_ms:.2f} | {theirs_ms / ours_ms:.2f}x |")


if __name__ == "__main__":
    main()
