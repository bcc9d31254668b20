"""GPU: stacked throughput, the transformer steps, and Doshi et al.'s grids at the paper's p = 97.

    python benchmarks/bench_gpu.py [--device cuda] [--ks 1,4,16,64,256,1024] [--parts throughput,steps,doshi]

1. Throughput (runs x steps per second) of the Gromov MLP (p = 97, width 500, full batch, AdamW) and the
   seed-001 parity net (n = 50, width 500, SGD) for stacks of K runs, eager and captured (the step replayed as a
   CUDA graph, engine/captured.py), next to the plain one-model loop of bench_engine.py on the same device;
   "vs K=1" is the captured stack's throughput over a captured stack of one.
2. The nanda-modadd full-batch step and the power-division minibatch step: plain PyTorch (bench_transformer.py),
   groklab eager and groklab captured, on the same device in the same run.
3. doshi-corruption, doshi-dropout and doshi-batchnorm run end to end at p = 97 (`groklab run NAME --set
   task.modulus=97 --device cuda`): their wall time and their claims' verdicts.

Times wait for the device (torch.cuda.synchronize) before each clock read; each is a median of repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_engine import GROMOV, PARITY, _time, engine_step_fn, plain_step_fn  # noqa: E402
from bench_transformer import groklab_step, plain_step  # noqa: E402

from groklab import RunConfig, load, run  # noqa: E402
from groklab.config import expand_runs, resolve_spec  # noqa: E402
from groklab.engine.captured import CapturedStep  # noqa: E402
from groklab.engine.plan import INDEXABLE, largest_tensor  # noqa: E402
from groklab.engine.stack import Stack  # noqa: E402
from groklab.expectations import check  # noqa: E402


def throughput(device: str, ks: list[int], repeats: int = 5) -> None:
    print("| workload | K | run-steps/s (captured) | vs K=1 | ms/step captured | ms/step eager | plain run-steps/s |")
    print("|---|---|---|---|---|---|---|")
    for name, spec in (("Gromov MLP p=97 N=500", GROMOV), ("parity net n=50 N=500", PARITY)):
        config = RunConfig.model_validate(spec)
        plain, _ = plain_step_fn(spec, config, device)
        _time(plain, 10)
        plain_rate = 1 / statistics.median(_time(plain, 50) for _ in range(repeats))
        base = None
        for k in ks:
            if k * largest_tensor(config) > INDEXABLE:
                print(f"| {name} | {k} | over the plan's limit (a tensor of 2^31 elements, engine/plan.py) | | | | |")
                continue
            try:
                times = {}
                for captured in (True, False):
                    step, _ = engine_step_fn(config, k, device, captured=captured)
                    _time(step, 5)  # warm up (and capture)
                    times[captured] = statistics.median(_time(step, 20) for _ in range(repeats))
                    del step
            except torch.OutOfMemoryError:
                print(f"| {name} | {k} | out of memory | | | | |")
                break
            rate = k / times[True]
            base = base or rate
            print(f"| {name} | {k} | {rate:,.0f} | {rate / base:.1f}x | {times[True] * 1e3:.2f} | "
                  f"{times[False] * 1e3:.2f} | {plain_rate:,.0f} |", flush=True)  # fmt: skip
            torch.cuda.empty_cache()


def profile(device: str) -> None:
    """Where a stack of one spends its step: kernels launched and host time per step (torch.profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    workloads = {}
    for captured in (False, True):
        how = "captured" if captured else "eager"
        for name, spec in (("Gromov MLP p=97 N=500", GROMOV), ("parity net n=50 N=500", PARITY)):
            workloads[f"{name}, {how}"] = engine_step_fn(RunConfig.model_validate(spec), 1, device, captured)[0]
        for name in ("nanda-modadd", "power-division"):
            config = expand_runs(resolve_spec(name))[0]
            stack = Stack([("r0", config)], torch.device(device))
            stack.captured = CapturedStep.for_stack(stack) if captured else None
            workloads[f"{name}, {how}"] = groklab_step(stack, config.train.loss)
    print("| workload (K = 1) | kernels per step | host ms per step | device ms per step |")
    print("|---|---|---|---|")
    for name, step in workloads.items():
        _time(step, 5)
        with profiler(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            _time(step, 10)
        averages = prof.key_averages()
        kernels = sum(e.count for e in averages if e.device_type == torch.autograd.DeviceType.CUDA) / 10
        host = sum(e.self_cpu_time_total for e in averages) / 10 / 1e3
        device_ms = sum(e.self_device_time_total for e in averages) / 10 / 1e3
        print(f"| {name} | {kernels:.0f} | {host:.2f} | {device_ms:.2f} |")
        print(averages.table(sort_by="count", row_limit=15), file=sys.stderr)


def steps(device: str, repeats: int = 5) -> None:
    print("| workload | plain PyTorch ms/step | groklab eager | groklab captured | captured vs plain |")
    print("|---|---|---|---|---|")
    for name, count in (("nanda-modadd", 20), ("power-division", 50)):
        config = expand_runs(resolve_spec(name))[0]
        eager, captured = (Stack([("r0", config)], torch.device(device)) for _ in range(2))
        captured.captured = CapturedStep.for_stack(captured)
        contenders = [plain_step(name, eager), groklab_step(eager, config.train.loss),
                      groklab_step(captured, config.train.loss)]  # fmt: skip
        for fn in contenders:
            _time(fn, 5)
        times = [[_time(fn, count) for _ in range(repeats)] for fn in contenders]
        plain_ms, eager_ms, captured_ms = (statistics.median(t) * 1e3 for t in times)
        print(f"| {name} | {plain_ms:.2f} | {eager_ms:.2f} | {captured_ms:.2f} | {plain_ms / captured_ms:.2f}x |",
              flush=True)  # fmt: skip


def doshi(device: str, sets: list[str]) -> None:
    print(f"| spec ({', '.join(sets)}) | runs | wall time | claims |")
    print("|---|---|---|---|")
    for name in ("doshi-corruption", "doshi-dropout", "doshi-batchnorm"):
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            run(name, out=Path(out) / name, device=device, sets=sets, progress=False)
            wall = time.perf_counter() - started
            result = load(Path(out) / name)
            verdicts = "; ".join(f"{v.claim.split(' (checked')[0]}: {v.measured} -> {v.met}" for v in check(result))
            print(f"| {name} | {len(result.rows)} | {wall / 60:.1f} min | {verdicts} |", flush=True)
            columns = [c for c in result.runs.columns if not c.startswith(("model.", "task.", "train.", "optimizer."))]
            print(result.runs[columns].to_string(max_cols=40), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--ks", default="1,4,16,64,256,1024", help="stack sizes")
    parser.add_argument("--parts", default="throughput,steps,doshi")
    parser.add_argument("--set", action="append", default=None, help="overrides of the Doshi specs (task.modulus=97)")
    args = parser.parse_args()
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"{date.today()}  {name}, torch {torch.__version__}")
    parts = args.parts.split(",")
    if "throughput" in parts:
        throughput(args.device, [int(k) for k in args.ks.split(",")])
    if "profile" in parts:
        profile(args.device)
    if "steps" in parts:
        steps(args.device)
    if "doshi" in parts:
        doshi(args.device, args.set or ["task.modulus=97"])


if __name__ == "__main__":
    main()
