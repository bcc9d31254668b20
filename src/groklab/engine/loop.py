"""The training loop: a stack of K runs trained in lockstep, read top to bottom.

    data (per run) -> stacked tensors -> for each step: [evaluate on schedule] -> batch -> loss -> grad -> update

Runs leave the stack when they finish (budget reached, stopped after generalizing, diverged): their
rows are cut out of the parameters, optimizer state and data, so the others go on at full speed.
A finished run is handed to `on_run_done` at once, so it is on disk before the stack ends.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from groklab.config import RunConfig, checkpoint_schedule, run_params
from groklab.engine import interrupt
from groklab.engine.checkpoint import load as load_checkpoint
from groklab.engine.checkpoint import restore, stack_state
from groklab.engine.checkpoint import save as save_checkpoint
from groklab.engine.events import RunEvents
from groklab.engine.recorder import Recorder
from groklab.engine.result import RunResult
from groklab.engine.stack import Stack

ProgressFn = Callable[[int, list[tuple[str, str]]], None]
"""on_progress(run_steps_done_since_last_call, [(run_id, event), ...])."""
EvaluationFn = Callable[[str, int, dict[str, float], list[str]], None]
"""on_evaluation(run_id, step, {metric or scalar measure: value at this step}, [events at this step])."""


def eval_steps(config: RunConfig, budgets: list[int]) -> list[int]:
    """Steps at which a stack evaluates: the schedule, step 0, and every run's last step."""
    last = max(budgets)
    every = config.train.eval_every
    if every == "log":
        schedule = np.unique(np.round(np.logspace(0, np.log10(max(last, 1)), 100)).astype(int)).tolist()
    else:
        schedule = list(range(0, last + 1, every))
    extra = {s for s in config.measures.representation_steps if s <= last}
    extra |= {s for s in checkpoint_schedule(config.measures, config.train.steps) if s <= last}
    return sorted(set(schedule) | {0} | set(budgets) | extra)


CHECKPOINT_SECONDS = 300.0
"""Wall time between two checkpoints of a stack when train.checkpoint_every is null (~5 minutes)."""

FAULT_VARIABLE = "GROKLAB_FAULT"
"""A test hook: RUN_ID@STEP in the environment makes the stack holding RUN_ID raise at STEP, as a bug or a
device error would (tests/integration/test_faults.py). Unset, it costs one dictionary lookup per stack."""


def train_stack(
    runs: list[tuple[str, RunConfig]],
    device: str | torch.device = "cpu",
    on_run_done: Callable[[RunResult], None] | None = None,
    on_progress: ProgressFn | None = None,
    checkpoint: Path | None = None,
    on_save: Callable[[list[RunResult]], None] | None = None,
    on_evaluation: EvaluationFn | None = None,
) -> list[RunResult]:
    """Train runs (run_id, config) that share a stack key in lockstep; return their results.

    With a `checkpoint` path the stack resumes from it if it exists, saves to it every
    train.checkpoint_every steps (or ~5 minutes), and before stopping when interrupt.requested is set
    (Ctrl-C, SIGTERM); the file is removed when the stack is done. `on_save` receives the unfinished runs'
    progress (status running, or interrupted; their curves so far, no weights) when the stack starts and
    after each checkpoint. `on_evaluation` hears every run's metrics and events at each evaluation (trackers).
    """
    stack = Stack(runs, torch.device(device))
    trained_by = {"host": socket.gethostname(), "pid": os.getpid(), "device": str(stack.device)}
    fault = _fault(stack.ids)
    first = stack.configs[0]
    loss_kind = first.loss_kind
    events = {
        run_id: RunEvents(
            c.train.steps, c.train.stop_after_generalized, c.train.stop_when_settled, c.train.settle_tolerance
        )
        for run_id, c in runs
    }
    recorder = Recorder([run_id for run_id, _ in runs], first)
    shrinks = {run_id: _shrinks_at(c) for run_id, c in runs if _shrinks_at(c) is not None}
    shrink_steps: dict[int, list[str]] = {}
    for run_id, when in shrinks.items():
        if isinstance(when, int):
            shrink_steps.setdefault(when, []).append(run_id)
    results: list[RunResult] = []
    schedule = eval_steps(first, [c.train.steps for c in stack.configs])
    loop: dict[str, Any] = {"step": 0, "schedule": schedule, "last_eval": 0, "elapsed": 0.0}
    if checkpoint is not None and checkpoint.is_file():
        loop = restore(stack, recorder, events, load_checkpoint(checkpoint))
        if on_progress is not None:  # the steps the checkpoint saved count as done
            on_progress(len(stack.ids) * loop["step"], [])
    schedule, last_eval = loop["schedule"], loop["last_eval"]
    saved_at = time.perf_counter()
    started = saved_at - loop["elapsed"]  # a resumed stack's runs count the time of earlier sessions
    every = first.train.checkpoint_every

    def progress(step: int, status: str) -> None:
        if on_save is not None:
            snapshots = [
                _snapshot(stack, i, step, events[r], recorder, started, status) for i, r in enumerate(stack.ids)
            ]
            for snapshot in snapshots:
                snapshot.trained_by = trained_by
            on_save(snapshots)

    progress(loop["step"], "running")
    for step in range(loop["step"], schedule[-1] + 1):
        if checkpoint is not None and step > loop["step"]:
            now = time.perf_counter()
            due = step % every == 0 if every is not None else now - saved_at >= CHECKPOINT_SECONDS
            if due or interrupt.requested is not None:
                state = {"step": step, "schedule": schedule, "last_eval": last_eval, "elapsed": now - started}
                save_checkpoint(checkpoint, stack_state(stack, recorder, events, state))
                saved_at = now
                progress(step, "running" if interrupt.requested is None else "interrupted")
        if interrupt.requested is not None:
            interrupt.stop_now()
        if step == fault.get("step"):
            raise RuntimeError(f"injected fault ({FAULT_VARIABLE}) in {fault['run']} at step {step}")
        evaluated = step == schedule[0]
        if evaluated:
            schedule.pop(0)
            rows = recorder.record(stack, step, stack.evaluate(loss_kind))
            news = [(r, e) for r, row in zip(stack.ids, rows) for e in events[r].observe(step, **_acc_loss(row))]
            for run_id, event in news:  # event-triggered switches (optimizer.on_*, task.on_generalized)
                i = stack.ids.index(run_id)
                switch = getattr(stack.configs[i].optimizer, f"on_{event}", None)
                if switch:
                    stack.optimizer.switch(i, switch)
                if event == "generalized" and shrinks.get(run_id) == "generalized":
                    stack.shrink(i, step)
            if on_evaluation is not None:  # trackers, users' callbacks: every run's row, with its measures
                for run_id in stack.ids:
                    row = {k: v[-1] for k, v in recorder.history[run_id].items() if k != "step" and v}
                    happened = [event for r, event in news if r == run_id]
                    on_evaluation(run_id, step, {k: v for k, v in row.items() if not math.isnan(v)}, happened)
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
                        result.trained_by = trained_by
                        results.append(result)
                        if on_run_done is not None:
                            on_run_done(result)
                if all(done):
                    break
                stack.select([not d for d in done])
        for run_id in shrink_steps.get(step, []):
            if run_id in stack.ids and stack.shrunk_at[stack.ids.index(run_id)] is None:
                stack.shrink(stack.ids.index(run_id), step)
        recorder.before_step(stack, evaluated)
        stack.train_step(step, loss_kind)
        recorder.after_step(stack)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)  # every run of the stack is finished and handed over
    return results


def _shrinks_at(config: RunConfig) -> int | str | None:
    """When a run's training set shrinks (task.on_generalized): at a step, at "generalized", or never (None)."""
    task = config.task
    if getattr(task, "kept_fraction", None) is None:
        return None
    return task.shrink_step if task.shrink_step is not None else "generalized"  # type: ignore[union-attr]


def _fault(run_ids: list[str]) -> dict[str, object]:
    """The injected fault (FAULT_VARIABLE) that concerns this stack: {run, step}, or {}."""
    run, _, step = os.environ.get(FAULT_VARIABLE, "").partition("@")
    return {"run": run, "step": int(step)} if run in run_ids and step.isdigit() else {}


def _snapshot(
    stack: Stack, i: int, step: int, events: RunEvents, recorder: Recorder, started: float, status: str
) -> RunResult:
    """An unfinished run's progress: its curves so far and its latest accuracies (no weights, no measures)."""
    config, history = stack.configs[i], recorder.history[stack.ids[i]]
    return RunResult(
        run_id=stack.ids[i],
        seed=config.seed,
        params={k: v for k, v in run_params(config).items() if not k.startswith("measures.")},
        status=status,
        steps=step,
        memorized_step=events.memorized_step,
        generalized_step=events.generalized_step,
        final={
            k: history[k][-1] if history[k] else math.nan for k in ("train_acc", "test_acc", "train_loss", "test_loss")
        },
        wall_time_s=time.perf_counter() - started,
        metrics={name: list(values) for name, values in history.items()},
        state_dict={},
    )


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
        data=stack.data[i].arrays() | _kept(stack, i),
        series=series,
        analysis=analysis,
        events=curve_events | ({"shrunk_step": stack.shrunk_at[i]} if _shrinks_at(config) is not None else {}),
        checkpoints=recorder.snapshots.pop(stack.ids[i], {}),
    )


def _kept(stack: Stack, i: int) -> dict[str, np.ndarray]:
    """The training examples a run kept when its training set shrank (task.on_generalized), as a 0/1 mask."""
    if stack.shrunk_at[i] is None or stack.kept is None:
        return {}
    return {"train_kept": stack.kept[i].cpu().numpy()}
