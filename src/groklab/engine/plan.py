"""The plan: which runs train together in one stack, and how many worker processes share the device.

Runs can share a stack when they differ only in per-run quantities (seed, optimizer hyperparameters,
init scale, label noise, budget); everything that changes a tensor shape or the code path (task sizes,
model, batch size, loss, dtype, eval schedule) starts a new stack group.

Stack size and process count come from measurements (benchmarks/bench_engine.py and end-to-end runs,
2-core shared CPU, 2026-11-24):
- a run whose step is a few hundred MFLOP or more (Gromov MLP, p=97, N=500: ~1.4 GFLOP) already keeps
  the matmul units busy; stacking K=8 / 64 of them made each run 1.1-1.4x slower (activations leave
  the cache), so on CPU such runs go one per stack;
- small runs (the parity net: ~50 MFLOP) are dispatch-bound; stacking K=8 gained ~1.5x per run;
- worker processes did not pay on 2 cores for small runs: 8 parity runs 16.0 / 16.0 s in one 2-thread
  process vs 16.9 / 17.9 s in two 1-thread processes (stacks of 4). They do for experiments made of
  many large runs, one per stack (see _cpu_workers): those get one 1-thread process per core;
- on a GPU small models are launch-bound: stack up to 256 runs in one process (GPU_STACK), as long as no
  tensor reaches 2^31 elements (INDEXABLE).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import torch

from groklab.config import RunConfig, SpecError
from groklab.data import task_sizes
from groklab.engine.cores import CpuBudget, cpu_budget
from groklab.models.sizes import model_sizes

PER_RUN_KEYS = {
    "seed",
    "variant",
    "optimizer.lr",
    "optimizer.weight_decay",
    "optimizer.betas",
    "optimizer.eps",
    "optimizer.momentum",
    "optimizer.alpha",
    "optimizer.warmup_steps",
    "optimizer.grokfast.filter",
    "optimizer.grokfast.alpha",
    "optimizer.grokfast.lamb",
    "optimizer.muon.lr",
    "optimizer.muon.weight_decay",
    "optimizer.muon.momentum",
    "optimizer.orthogonal",
    "model.init_scale",
    "model.output_scale",
    "task.label_noise",
    "task.shrink_step",
    "train.steps",
    "train.stop_after_generalized",
    "train.stop_when_settled",
    "train.settle_tolerance",
}
"""Keys that may differ between the runs of one stack: each is a (run,) tensor or host-side logic."""

LARGE_STEP_FLOPS = 2e8
"""Per-run FLOPs per step above which a CPU run is matmul-bound and is not stacked."""

PARALLEL_FLOPS = 1e13
"""Budgeted FLOPs (all runs) above which an experiment of large CPU runs is worth a process per core
(~3 min of matmul on this machine: long enough to repay starting the processes)."""


@dataclass
class Plan:
    """How an experiment's runs execute."""

    stacks: list[list[tuple[str, RunConfig]]]
    """Each stack: (run_id, config) pairs trained in lockstep."""
    workers: int
    """Worker processes (1 = train in this process)."""
    threads: int
    """torch threads per process (workers x threads stays within the CPU budget)."""
    device: str
    budget: CpuBudget = field(default_factory=lambda: CpuBudget(1, "affinity"))
    """The cores this process may use in all, and what set that number (engine/cores.py)."""

    def describe(self) -> dict[str, object]:
        """What the plan decided, for meta.json."""
        return {
            "device": self.device,
            "workers": self.workers,
            "threads_per_worker": self.threads,
            "cpu_budget": f"{self.budget.cores} ({self.budget.limited_by})",
            "stack_sizes": [len(s) for s in self.stacks],
        }


def stack_key(config: RunConfig) -> str:
    """Identical for runs that can share a stack."""
    from groklab.config import run_params

    shared = {k: v for k, v in run_params(config).items() if not _per_run(k)}
    return json.dumps(shared, sort_keys=True)


def _per_run(key: str) -> bool:
    # Event-triggered switches (optimizer.on_memorized.*) are per-run hyperparameter writes; a parameter group's lr
    # and weight decay are (run,) columns of their own (engine/optim.py); a torch.optim class's kwargs go to each
    # run's own instance (engine/torch_optim.py).
    return key in PER_RUN_KEYS or key.startswith(
        ("optimizer.on_memorized", "optimizer.on_generalized", "optimizer.param_groups", "optimizer.kwargs",
         "task.on_generalized")
    )  # fmt: skip


def step_flops(config: RunConfig) -> float:
    """Approximate FLOPs of one training step of one run (forward + backward ~ 3x forward matmuls)."""
    n_train = task_sizes(config.task).n_train
    return min(config.train.batch_size or n_train, n_train) * model_sizes(config).flops


def run_bytes(config: RunConfig) -> dict[str, float]:
    """Estimated peak memory of one run in a stack, by part: its data, its parameters with their gradients,
    optimizer moments and copies (x6), and the activations of a training step and of an evaluation.

    An estimate from the config alone (nothing is allocated), within ~2x of what torch holds: it exists to
    refuse an experiment that cannot fit before anything is built, not to plan to the byte.
    """
    sizes, model = task_sizes(config.task), model_sizes(config)
    size = 8 if config.train.dtype == "float64" else 4
    n_examples, n_classes = sizes.n_examples, sizes.n_classes
    if sizes.table:
        data = n_examples * 100  # the table as Python integers while it is built, then int64 tensors
    else:  # the inputs, and labels, indices and masks
        data = n_examples * (sizes.input_dim * size + 3 * 8)
    parameters = 6 * size * sum(math.prod(shape) for shape in model.shapes.values())
    batch = min(config.train.batch_size or n_examples, n_examples)
    logits = model.scores * 8 * 3  # the scores, the loss in float64, their gradient
    return {
        "data": float(data),
        "parameters": float(parameters),
        "training activations": float(batch * (model.width * size + logits)),
        "evaluation activations": float(n_examples * (model.width * size // 4 + n_classes * size)),
    }


def model_shapes(config: RunConfig) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of one run of `config`'s model, from the config alone (no data is made)."""
    return model_sizes(config).shapes


def check_param_groups(stacks: list[list[tuple[str, RunConfig]]]) -> None:
    """Raise SpecError for an optimizer.param_groups name that is not a parameter of the run's model."""
    for stack in stacks:
        names = {name for _, config in stack for name in config.optimizer.param_groups}
        if names:
            shapes = model_shapes(stack[0][1])
            unknown = sorted(names - set(shapes))
            if unknown:
                raise SpecError(
                    f"optimizer.param_groups: {', '.join(unknown)} not a parameter of this model; allowed: "
                    f"{', '.join(shapes)}"
                )


def device_bytes(device: str) -> float:
    """Memory of the device: this machine's RAM for cpu, the GPU's for cuda."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():  # planning for a GPU elsewhere: nothing here to measure against
            return math.inf
        return float(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_memory(stacks: list[list[tuple[str, RunConfig]]], device: str) -> None:
    """Raise SpecError, naming the key to change and the estimate, for a stack that cannot fit the device."""
    available = device_bytes(device)
    for stack in stacks:
        first = stack[0][1]
        parts = {name: value * len(stack) for name, value in run_bytes(first).items()}
        needed = sum(parts.values())
        limit = first.train.memory_gb * 2**30 if first.train.memory_gb is not None else available
        if needed > limit:
            key = _size_key(first, max(parts, key=lambda part: parts[part]))
            shown = ", ".join(f"{name} {value / 2**30:.3g}" for name, value in parts.items())
            raise SpecError(
                f"{key}: a stack of {len(stack)} run(s) needs ~{needed / 2**30:.3g} GiB ({shown}) but the limit is "
                f"{limit / 2**30:.3g} GiB (the {device}'s memory, or train.memory_gb); make it smaller, or set "
                "train.memory_gb to go on"
            )


def _size_key(config: RunConfig, part: str) -> str:
    """The spec key that drives a part of a run's memory."""
    task = config.task
    examples = {
        "parity": "task.n_train",
        "images": "task.n_test",
        "teacher": "task.n_train",
        "arrays": "task.path",
        "function": "task.factory",
        "permutation": "task.degree",
        "addition": "task.operands",
    }.get(task.name, "task.modulus")
    size = model_sizes(config).size_key
    if part in ("data", "evaluation activations"):
        return examples
    if part == "parameters":
        return size
    # A training step's activations grow with the batch (the whole training set when full batch) x width.
    return f"{size} / train.batch_size" if config.train.batch_size else f"{examples} / {size} / train.batch_size"


GPU_STACK = 256
"""Runs per stack on a GPU, where small models are launch-bound (benchmarks/bench_gpu.py; docs/benchmarks.md)."""

INDEXABLE = 2**31 - 1
"""Elements of the largest tensor a stack may make on a GPU. Some CUDA kernels index with 32-bit integers:
a stack of 1,024 Gromov MLPs at p = 97 (the hidden layer: 1,024 x 4,704 x 500 = 2.4e9 elements) stopped
with an illegal memory access (H100, torch 2.11, 2026-11-24); 256 of them (6e8) trained."""


def largest_tensor(config: RunConfig) -> int:
    """Elements per run of the largest activation of an evaluation (all examples at once) or a training step."""
    return task_sizes(config.task).n_evaluated * model_sizes(config).largest


def cpu_count() -> int:
    """Cores this process may use (engine/cores.py: affinity, cgroup quota, OMP_NUM_THREADS, SLURM_CPUS_PER_TASK)."""
    return cpu_budget().cores


def make_plan(
    runs: list[tuple[str, RunConfig]],
    device: str = "cpu",
    workers: int | None = None,
    stack_size: int | None = None,
    first: list[list[tuple[str, RunConfig]]] | None = None,
    threads: int | None = None,
) -> Plan:
    """Group runs into stacks and choose the process layout for `device`. `first`: stacks already formed
    (resumed from their checkpoints), kept as they are and trained first. `threads` (--threads): the most
    torch threads in all, over every worker process; the CPU budget limits it further (engine/cores.py)."""
    groups: dict[str, list[tuple[str, RunConfig]]] = {}
    for run_id, config in runs:
        groups.setdefault(stack_key(config), []).append((run_id, config))
    on_gpu = device.startswith("cuda")
    stacks = list(first or [])
    for members in groups.values():
        if stack_size is not None:
            size = stack_size
        elif on_gpu:
            size = min(GPU_STACK, max(1, INDEXABLE // largest_tensor(members[0][1])))
        else:
            size = 1 if step_flops(members[0][1]) >= LARGE_STEP_FLOPS else 16
        stacks += [members[i : i + size] for i in range(0, len(members), size)]
    budget = cpu_budget(threads)
    cores = budget.cores
    if on_gpu:
        workers = 1
    elif workers is None:
        workers = _cpu_workers(stacks, cores)
    else:
        workers = max(1, min(workers, len(stacks)))
    check_param_groups(stacks)
    check_memory(stacks, device)
    return Plan(stacks=stacks, workers=workers, threads=max(1, cores // workers), device=device, budget=budget)


def _cpu_workers(stacks: list[list[tuple[str, RunConfig]]], cores: int) -> int:
    """One 1-thread process per core for a long experiment made of matmul-bound runs, else one process.

    Measured (2-core CPU, 2026-11-24, Gromov MLP): per step, p = 97 (1.4 GFLOP) takes 43.5 ms in one
    2-thread process vs 71.5 / 75.5 ms in each of two 1-thread processes (36.7 ms of throughput, 1.19x);
    p = 59: 14.6 vs 20.6 / 23.5 ms (11.0 ms, 1.32x): two threads on one matmul of this size synchronize
    more than they gain. End to end, starting a process (~4 s) costs more than that on short
    experiments: modular-addition x 4 seeds took 34.5 / 36.8 s with one process, 39.0 / 38.3 s with two;
    doshi-corruption (100 runs, 169,620 steps) took 32.6 min with two, where one would need ~41 min for
    its steps alone (169,620 x 14.6 ms).
    """
    large = all(len(stack) == 1 and step_flops(stack[0][1]) >= LARGE_STEP_FLOPS for stack in stacks)
    work = sum(step_flops(c) * c.train.steps for stack in stacks for _, c in stack)
    return min(cores, len(stacks)) if large and len(stacks) > 1 and work >= PARALLEL_FLOPS else 1
