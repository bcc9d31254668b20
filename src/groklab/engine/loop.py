"""The training loop: a stack of K runs trained in lockstep, read top to bottom.

    data (per run) -> stacked tensors -> for each step: [evaluate on schedule] -> batch -> loss -> grad -> update

Runs leave the stack when they finish (budget reached, stopped after generalizing, diverged): their
rows are cut out of the parameters, optimizer state and data, so the others go on at full speed.
A finished run is handed to `on_run_done` at once, so it is on disk before the stack ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from groklab.config import RunConfig, run_params
from groklab.data import make_data
from groklab.data.dataset import RunData, derive_seed
from groklab.engine.events import RunEvents
from groklab.engine.losses import per_run_loss
from groklab.engine.optim import StackOptimizer, hyperparameters
from groklab.engine.recorder import Recorder
from groklab.measures import Probe
from groklab.models import build_model, stack_params
from groklab.models.mlp import MLP, linear_layout


@dataclass
class RunResult:
    """Everything one finished run leaves behind."""

    run_id: str
    seed: int
    params: dict[str, Any]
    status: str
    steps: int
    memorized_step: int | None
    generalized_step: int | None
    final: dict[str, float]
    wall_time_s: float
    metrics: dict[str, list[float]]
    state_dict: dict[str, torch.Tensor]
    data: dict[str, np.ndarray] = field(default_factory=dict)
    series: dict[str, np.ndarray] = field(default_factory=dict)
    """Vector-valued measures over evaluations (name -> (n, ...); name.steps -> the steps) and final arrays."""
    analysis: dict[str, float] = field(default_factory=dict)
    """Scalar results of the measures computed once after training (e.g. the analytic comparison)."""
    events: dict[str, Any] = field(default_factory=dict)
    """Events read off the curves (measures/events.py): test-loss peak, delay, slingshots, phases."""

    def row(self) -> dict[str, Any]:
        """The run's summary row (what `groklab summary --json` prints)."""
        return {
            "run_id": self.run_id,
            "seed": self.seed,
            "params": self.params,
            "status": self.status,
            "steps": self.steps,
            "memorized_step": self.memorized_step,
            "generalized_step": self.generalized_step,
            "final": self.final,
            "events": self.events,
            "analysis": self.analysis,
            "wall_time_s": self.wall_time_s,
        }


ProgressFn = Callable[[int, list[tuple[str, str]]], None]
"""on_progress(run_steps_done_since_last_call, [(run_id, event), ...])."""


def eval_steps(config: RunConfig, budgets: list[int]) -> list[int]:
    """Steps at which a stack evaluates: the schedule, step 0, and every run's last step."""
    last = max(budgets)
    every = config.train.eval_every
    if every == "log":
        schedule = np.unique(np.round(np.logspace(0, np.log10(max(last, 1)), 100)).astype(int)).tolist()
    else:
        schedule = list(range(0, last + 1, every))
    extra = {s for s in config.measures.representation_steps if s <= last}
    return sorted(set(schedule) | {0} | set(budgets) | extra)


class Stack:
    """K runs that share shapes (task, model, batch size, loss, dtype) as one batched model."""

    def __init__(self, runs: list[tuple[str, RunConfig]], device: torch.device) -> None:
        self.ids = [run_id for run_id, _ in runs]
        self.configs = [config for _, config in runs]
        first = self.configs[0]
        self.device = device
        self.dtype = torch.float64 if first.train.dtype == "float64" else torch.float32
        self.data: list[RunData] = [make_data(c.task, c.seed) for c in self.configs]
        self.model = build_model(first.model, self.data[0])

        def stacked(name: str) -> torch.Tensor:
            tensor = torch.stack([getattr(d, name) for d in self.data]).to(device)
            return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

        # Inputs are prepared once (e.g. token sequences for a transformer), never inside the step.
        self.x_train, self.y_train = self.model.prepare(stacked("x_train")), stacked("y_train")  # (run, n, ...)
        self.x_test, self.y_test = self.model.prepare(stacked("x_test")), stacked("y_test")
        # Each run inits from its own model config: init_scale is a per-run quantity.
        per_run = [build_model(c.model, d).init(c.seed, self.dtype) for c, d in zip(self.configs, self.data)]
        per_run = [{n: p.to(device) for n, p in params.items()} for params in per_run]
        self.params = {n: p.requires_grad_() for n, p in linear_layout(stack_params(per_run)).items()}
        self.init_params = {n: p.detach().clone() for n, p in self.params.items()}  # for init_distance
        hyper = hyperparameters([c.optimizer for c in self.configs], device, self.dtype)
        self.optimizer = StackOptimizer(first.optimizer.name, self.params, hyper)
        n_train = self.x_train.shape[1]
        batch_size = first.train.batch_size
        self.batch_size = n_train if batch_size is None or batch_size >= n_train else batch_size
        self.batch_generators = [torch.Generator().manual_seed(derive_seed(c.seed, "batches")) for c in self.configs]
        self.order: torch.Tensor | None = None  # (run, n_train) this epoch's permutation
        self.cursor = n_train
        self.loss_dtype = torch.float64 if first.train.loss_dtype == "float64" else self.dtype
        self.eval_logits: list[torch.Tensor] = []  # (train, test) logits of the last evaluation
        # A training pass differs from evaluation with dropout (each run draws its masks from its own
        # generator, so stacked == alone holds) and BatchNorm (batch statistics, running ones updated).
        self.buffers = self.model.buffers(len(runs), device, self.dtype) if isinstance(self.model, MLP) else {}
        trains_differently = getattr(first.model, "dropout", 0.0) > 0 or getattr(first.model, "batchnorm", False)
        self.train_generators = (
            [torch.Generator().manual_seed(derive_seed(c.seed, "dropout")) for c in self.configs]
            if trains_differently
            else None
        )

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (x, y) of every run: the whole train set, or the next slice of each run's shuffle."""
        n_train = self.x_train.shape[1]
        if self.batch_size == n_train:
            return self.x_train, self.y_train
        if self.cursor >= n_train:  # new epoch: each run reshuffles with its own generator
            orders = [torch.randperm(n_train, generator=g) for g in self.batch_generators]
            self.order = torch.stack(orders).to(self.device)
            self.cursor = 0
        assert self.order is not None
        index = self.order[:, self.cursor : self.cursor + self.batch_size]  # (run, batch)
        self.cursor += self.batch_size
        rows = torch.arange(index.shape[0], device=self.device)[:, None]
        return self.x_train[rows, index], self.y_train[rows, index]

    def train_step(self, step: int, loss_kind: str) -> None:
        """One optimizer update of every run in the stack (no host synchronization)."""
        x, y = self.batch()
        self.eval_logits = []  # stale after this step
        logits = self.forward(x, train=True)
        loss = per_run_loss(logits.to(self.loss_dtype), y, loss_kind).sum()
        # Summing the runs' losses gives each run exactly its own gradient: runs share no parameters.
        grads = torch.autograd.grad(loss, list(self.params.values()))
        self.optimizer.step(self.params, dict(zip(self.params, grads)), step)

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """Logits of every run; a training pass draws dropout masks and updates the BatchNorm statistics."""
        kwargs: dict[str, Any] = {"buffers": self.buffers} if self.buffers else {}
        if train and self.train_generators is not None:
            kwargs["generators"] = self.train_generators
        return self.model.forward(self.params, x, **kwargs)

    @torch.no_grad()
    def evaluate(self, loss_kind: str) -> torch.Tensor:
        """(metric, run) tensor of METRICS on the full train and test sets.

        The logits stay in `self.eval_logits` (train, test) until the next step: measures reuse them.
        """
        rows, self.eval_logits = [], []
        for x, y in ((self.x_train, self.y_train), (self.x_test, self.y_test)):
            logits = self.forward(x)
            self.eval_logits.append(logits)
            rows.append(per_run_loss(logits.to(self.loss_dtype), y, loss_kind).to(self.dtype))
            rows.append((logits.argmax(dim=-1) == y).to(self.dtype).mean(dim=1))
        rows.append(torch.sqrt(sum(p.square().flatten(1).sum(dim=1) for p in self.params.values())))
        return torch.stack(rows)

    def select(self, keep: list[bool]) -> None:
        """Cut finished runs out of the stack."""
        mask = torch.tensor(keep, device=self.device)
        kept = linear_layout({n: p.detach()[mask] for n, p in self.params.items()})
        self.params = {n: p.requires_grad_() for n, p in kept.items()}
        self.init_params = {n: p[mask] for n, p in self.init_params.items()}
        self.buffers = {n: b[mask] for n, b in self.buffers.items()}
        self.optimizer.select(mask)
        self.x_train, self.y_train = self.x_train[mask], self.y_train[mask]
        self.x_test, self.y_test = self.x_test[mask], self.y_test[mask]
        self.eval_logits = [logits[mask] for logits in self.eval_logits]
        if self.order is not None:
            self.order = self.order[mask]
        for name in ("ids", "configs", "data", "batch_generators", "train_generators"):
            if getattr(self, name) is not None:
                setattr(self, name, [item for item, k in zip(getattr(self, name), keep) if k])

    def probe(self, step: int, run: int | None = None) -> Probe:
        """What the measures read at this step: the whole stack, or one run of it (a stack of one)."""
        index = slice(None) if run is None else slice(run, run + 1)
        tensors = {"x_train": self.x_train, "y_train": self.y_train, "x_test": self.x_test, "y_test": self.y_test}
        configs, data = (self.configs, self.data) if run is None else ([self.configs[run]], [self.data[run]])
        return Probe(
            step,
            {n: p[index] for n, p in self.params.items()},
            self.model,
            configs,
            data,
            {n: p[index] for n, p in self.init_params.items()},
            {n: t[index] for n, t in tensors.items()},
            [logits[index] for logits in self.eval_logits],
            {n: b[index] for n, b in self.buffers.items()},
        )


def train_stack(
    runs: list[tuple[str, RunConfig]],
    device: str | torch.device = "cpu",
    on_run_done: Callable[[RunResult], None] | None = None,
    on_progress: ProgressFn | None = None,
) -> list[RunResult]:
    """Train runs (run_id, config) that share a stack key in lockstep; return their results."""
    started = time.perf_counter()
    stack = Stack(runs, torch.device(device))
    first = stack.configs[0]
    loss_kind = first.train.loss
    events = {
        run_id: RunEvents(
            c.train.steps, c.train.stop_after_generalized, c.train.stop_when_settled, c.train.settle_tolerance
        )
        for run_id, c in runs
    }
    recorder = Recorder([run_id for run_id, _ in runs], first)
    results: list[RunResult] = []
    schedule = eval_steps(first, [c.train.steps for c in stack.configs])
    last_eval = 0
    for step in range(schedule[-1] + 1):
        evaluated = step == schedule[0]
        if evaluated:
            schedule.pop(0)
            rows = recorder.record(stack, step, stack.evaluate(loss_kind))
            news = [(r, e) for r, row in zip(stack.ids, rows) for e in events[r].observe(step, **_acc_loss(row))]
            for run_id, event in news:  # event-triggered hyperparameter switches (optimizer.on_*)
                i = stack.ids.index(run_id)
                switch = getattr(stack.configs[i].optimizer, f"on_{event}", None)
                if switch:
                    stack.optimizer.switch(i, switch)
            done = [events[run_id].status is not None for run_id in stack.ids]
            if on_progress is not None:
                # Runs that stop early count their unused budget as done, so the bar ends full.
                skipped = sum(c.train.steps - step for c, d in zip(stack.configs, done) if d)
                on_progress(len(stack.ids) * (step - last_eval) + skipped, news)
            last_eval = step
            if any(done):
                for i, run_id in enumerate(stack.ids):
                    if done[i]:
                        result = _result(stack, i, step, events[run_id], recorder, started)
                        results.append(result)
                        if on_run_done is not None:
                            on_run_done(result)
                if all(done):
                    break
                stack.select([not d for d in done])
        recorder.before_step(stack, evaluated)
        stack.train_step(step, loss_kind)
        recorder.after_step(stack)
    return results


def _acc_loss(row: dict[str, float]) -> dict[str, float]:
    return {k: row[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")}


def _result(stack: Stack, i: int, step: int, events: RunEvents, recorder: Recorder, started: float) -> RunResult:
    config = stack.configs[i]
    history, series, analysis, curve_events = recorder.finish(stack, i, events.memorized_step, events.generalized_step)
    return RunResult(
        run_id=stack.ids[i],
        seed=config.seed,
        params={k: v for k, v in run_params(config).items() if not k.startswith("measures.")},
        status=events.status or "completed",
        steps=step,
        memorized_step=events.memorized_step,
        generalized_step=events.generalized_step,
        final={k: history[k][-1] for k in ("train_acc", "test_acc", "train_loss", "test_loss")},
        wall_time_s=time.perf_counter() - started,
        metrics=history,
        state_dict={n: p[i].detach().cpu().clone() for n, p in {**stack.params, **stack.buffers}.items()},
        data=stack.data[i].arrays(),
        series=series,
        analysis=analysis,
        events=curve_events,
    )
