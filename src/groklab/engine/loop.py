"""The training loop: a stack of K runs trained in lockstep, read top to bottom.

    data (per run) -> stacked tensors -> for each step: [evaluate on schedule] -> batch -> loss -> grad -> update

Runs leave the stack when they finish (budget reached, stopped after generalizing, diverged): their
rows are cut out of the parameters, optimizer state and data, so the others go on at full speed.
A finished run is handed to the listener at once, so it is on disk before the stack ends.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from dataclasses import dataclass

import numpy as np
import torch

from groklab.config import RunConfig, run_params, snapshot_schedule
from groklab.engine import interrupt
from groklab.engine.captured import CapturedStep
from groklab.engine.checkpoint import Checkpoint, fingerprint
from groklab.engine.listener import Listener
from groklab.engine.milestones import Milestones
from groklab.engine.precision import float32_precision
from groklab.engine.recorder import Recorder
from groklab.engine.result import RunResult
from groklab.engine.stack import Stack

CHECKPOINT_SECONDS = 300.0
"""Wall time between two checkpoints of a stack when train.checkpoint_every is null (~5 minutes)."""


@dataclass
class LoopState:
    """Where the loop stands between two steps (a checkpoint keeps it)."""

    step: int
    """The next step to train."""
    schedule: list[int]
    """The evaluations still ahead (eval_steps)."""
    last_eval: int = 0
    """The step of the last evaluation (progress counts run-steps from it)."""
    elapsed: float = 0.0
    """Seconds spent training the stack before this step, earlier sessions included."""


def train_stack(
    runs: list[tuple[str, RunConfig]],
    device: str | torch.device = "cpu",
    listener: Listener | None = None,
    resume: Checkpoint | None = None,
) -> list[RunResult]:
    """Train runs (run_id, config) that share a stack key in lockstep; return their results.

    The listener hears the stack start, every evaluation, each run as it finishes, the run-steps done, and —
    if it keeps checkpoints — the stack's state every train.checkpoint_every steps (or ~5 minutes) and before
    stopping when interrupt.requested is set (Ctrl-C, SIGTERM). `resume` continues from such a checkpoint.
    """
    with float32_precision(runs[0][1].train.tf32):  # runs of a stack share train.tf32 (engine/plan.py)
        return _train_stack(runs, device, listener or Listener(), resume)


def _train_stack(
    runs: list[tuple[str, RunConfig]], device: str | torch.device, listener: Listener, resume: Checkpoint | None
) -> list[RunResult]:
    stack = Stack(runs, torch.device(device))
    stack.captured = CapturedStep.for_stack(stack)  # on a GPU the step is a replayed CUDA graph; None: eager
    first = stack.runs.configs[0]
    recorder = Recorder(stack.runs.ids, first)
    milestones = {run_id: Milestones.of(config) for run_id, config in runs}
    interventions = Interventions(runs)
    state = LoopState(step=0, schedule=eval_steps(first, [c.train.steps for c in stack.runs.configs]))
    if resume is not None:
        state = resume_from(resume, stack, recorder, milestones)
        listener.on_progress(len(stack.runs.ids) * state.step, [])  # the steps the checkpoint saved count as done
    clock = Clock(first.train.checkpoint_every, state.elapsed)
    # "step": captured (a CUDA graph replayed: engine/captured.py) or eager: the same updates to float32 rounding.
    step_kind = "eager" if stack.captured is None else "captured"
    trained_by = {"host": socket.gethostname(), "pid": os.getpid(), "device": str(stack.device), "step": step_kind}
    listener.on_start(_progress(stack, state.step, milestones, recorder, clock.elapsed(), "running", trained_by))
    results: list[RunResult] = []
    start = state.step
    for step in range(start, state.schedule[-1] + 1):
        # Checkpoint on schedule, and before stopping when a stop was asked for (never half an update).
        stopping = interrupt.requested is not None
        if listener.checkpoints and step > start and (clock.due(step) or stopping):
            state.step, state.elapsed = step, clock.elapsed()
            status = "interrupted" if stopping else "running"
            progress = _progress(stack, step, milestones, recorder, state.elapsed, status, trained_by)
            listener.on_checkpoint(checkpoint_of(state, stack, recorder, milestones), progress)
            clock.saved()
        if stopping:
            interrupt.stop_now()

        # Evaluate on schedule: metrics and measures of every run, then its milestones.
        evaluated = step == state.schedule[0]
        reached: list[tuple[str, str]] = []
        if evaluated:
            state.schedule.pop(0)
            rows = recorder.record(stack, step, stack.evaluate())
            for run_id, row in zip(stack.runs.ids, rows):
                reached += [(run_id, m) for m in milestones[run_id].observe(step, *(row[k] for k in OBSERVED))]
            for run_id in stack.runs.ids:
                history = recorder.history[run_id]
                metrics = {k: v[-1] for k, v in history.items() if k != "step" and v and not math.isnan(v[-1])}
                listener.on_evaluation(run_id, step, metrics, [m for r, m in reached if r == run_id])

        # Interventions: hyperparameter switches and shrinking training sets, at milestones or at a step.
        interventions.apply(stack, step, reached, milestones)

        # Runs that are done leave the stack, handed over at once (a run that stops early counts its unused budget).
        if evaluated:
            done = [milestones[run_id].status is not None for run_id in stack.runs.ids]
            unused = sum(c.train.steps - step for c, d in zip(stack.runs.configs, done) if d)
            listener.on_progress(len(stack.runs.ids) * (step - state.last_eval) + unused, reached)
            state.last_eval = step
            for i in (i for i, d in enumerate(done) if d):
                results.append(_result(stack, i, step, milestones, recorder, clock.elapsed(), trained_by))
                listener.on_run_done(results[-1])
            if all(done):
                break
            if any(done):
                stack.select([not d for d in done])

        # One step of every run (the one after an evaluation also measures its update, for update_norm).
        measure_update = evaluated and bool(recorder.updates)
        stack.train_step(step, measure_update)
        if measure_update:
            recorder.record_update(stack, step)
    return results


OBSERVED = ("train_loss", "train_acc", "test_loss", "test_acc")
"""The metrics milestones read, in Milestones.observe's order."""
FINAL = ("train_acc", "test_acc", "train_loss", "test_loss")
"""The metrics of a run's summary row (its last evaluation)."""


def eval_steps(config: RunConfig, budgets: list[int]) -> list[int]:
    """Steps at which a stack evaluates: the schedule, step 0, and every run's last step."""
    last = max(budgets)
    every = config.train.eval_every
    if every == "log":
        schedule = np.unique(np.round(np.logspace(0, np.log10(max(last, 1)), 100)).astype(int)).tolist()
    else:
        schedule = list(range(0, last + 1, every))
    extra = {s for s in config.measures.representations.steps if s <= last}
    extra |= {s for s in snapshot_schedule(config.measures, config.train.steps) if s <= last}
    return sorted(set(schedule) | {0} | set(budgets) | extra)


class Clock:
    """The stack's wall time (earlier sessions included) and when its next checkpoint is due."""

    def __init__(self, every: int | None, elapsed: float) -> None:
        self.every = every
        self.started = time.perf_counter() - elapsed
        self.last_save = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def due(self, step: int) -> bool:
        """Every `every` steps, or CHECKPOINT_SECONDS after the last save when `every` is None."""
        if self.every is not None:
            return step % self.every == 0
        return time.perf_counter() - self.last_save >= CHECKPOINT_SECONDS

    def saved(self) -> None:
        self.last_save = time.perf_counter()


class Interventions:
    """What changes a run while it trains, read once from the configs: optimizer.on_memorized / on_generalized
    switch its hyperparameters at that milestone; task.on_generalized shrinks its training set when it generalizes
    or at task.shrink_step (Varma et al.'s ungrokking)."""

    def __init__(self, runs: list[tuple[str, RunConfig]]) -> None:
        self.switches = {(run_id, milestone): values for run_id, config in runs
                         for milestone in ("memorized", "generalized")
                         if (values := getattr(config.optimizer, f"on_{milestone}", None))}  # fmt: skip
        shrinking = [(run_id, config.task) for run_id, config in runs if shrinks(config)]
        at_step = {run_id: getattr(task, "shrink_step", None) for run_id, task in shrinking}
        self.shrink_at_milestone = {run_id for run_id, step in at_step.items() if step is None}
        self.shrink_at_step = {run_id: step for run_id, step in at_step.items() if step is not None}

    def apply(self, stack: Stack, step: int, reached: list[tuple[str, str]], milestones: dict[str, Milestones]) -> None:
        """Apply what the milestones reached at this step, and the shrinks due at it, before the step is trained."""
        for run_id, milestone in reached:
            i = stack.runs.ids.index(run_id)
            if (run_id, milestone) in self.switches:
                stack.optimizer.switch(i, self.switches[run_id, milestone])
            if milestone == "generalized" and run_id in self.shrink_at_milestone:
                stack.shrink(i, step)
        for run_id, at in self.shrink_at_step.items():
            if at == step and run_id in stack.runs.ids and milestones[run_id].status is None:
                i = stack.runs.ids.index(run_id)
                if stack.runs.shrunk_at[i] is None:
                    stack.shrink(i, step)


def shrinks(config: RunConfig) -> bool:
    """Whether a run's training set shrinks while it trains (task.on_generalized)."""
    return getattr(config.task, "kept_fraction", None) is not None


def checkpoint_of(state: LoopState, stack: Stack, recorder: Recorder, milestones: dict[str, Milestones]) -> Checkpoint:
    """The stack's checkpoint: every part's state_dict (the runs that left are on disk already)."""
    return Checkpoint(
        ids=list(stack.runs.ids),
        step=state.step,
        fingerprint=fingerprint(list(zip(stack.runs.ids, stack.runs.configs))),
        state={
            "stack": stack.state_dict(),
            "recorder": recorder.state_dict(),
            "milestones": {run_id: milestones[run_id].state_dict() for run_id in stack.runs.ids},
            "loop": dataclasses.asdict(state),
        },
    )


def resume_from(
    checkpoint: Checkpoint, stack: Stack, recorder: Recorder, milestones: dict[str, Milestones]
) -> LoopState:
    """Put a checkpoint into a freshly built stack of the same runs; return the loop's state."""
    if checkpoint.fingerprint != fingerprint(list(zip(stack.runs.ids, stack.runs.configs))):
        raise ValueError(f"checkpoint of runs {checkpoint.ids} with other settings does not fit the stack")
    saved = checkpoint.state
    stack.load_state_dict(saved["stack"])
    recorder.load_state_dict(saved["recorder"])
    for run_id, fields in saved["milestones"].items():
        milestones[run_id].load_state_dict(fields)
    return LoopState(**saved["loop"])


def _progress(
    stack: Stack,
    step: int,
    milestones: dict[str, Milestones],
    recorder: Recorder,
    wall_time: float,
    status: str,
    trained_by: dict[str, object],
) -> list[RunResult]:
    """The unfinished runs as they stand: their curves so far and latest accuracies (no weights, no measures)."""
    progress = []
    for run_id, config in zip(stack.runs.ids, stack.runs.configs):
        history, reached = recorder.history[run_id], milestones[run_id]
        final = {k: history[k][-1] if history[k] else math.nan for k in FINAL}
        progress.append(
            RunResult(
                run_id=run_id,
                seed=config.seed,
                params=_params(config),
                status=status,
                steps=step,
                memorized_step=reached.memorized_step,
                generalized_step=reached.generalized_step,
                final=final,
                wall_time_s=wall_time,
                metrics={name: list(values) for name, values in history.items()},
                state_dict={},
                trained_by=trained_by,
            )
        )
    return progress


def _result(
    stack: Stack,
    i: int,
    step: int,
    milestones: dict[str, Milestones],
    recorder: Recorder,
    wall_time: float,
    trained_by: dict[str, object],
) -> RunResult:
    """Everything a finished run leaves behind (the recorder hands over its records of it)."""
    run_id, config, runs = stack.runs.ids[i], stack.runs.configs[i], stack.runs
    reached = milestones[run_id]
    history, series, analysis, curve_events = recorder.finish(
        stack, i, reached.memorized_step, reached.generalized_step
    )
    kept = {"train_kept": runs.kept[i].cpu().numpy()} if runs.shrunk_at[i] is not None and runs.kept is not None else {}
    return RunResult(
        run_id=run_id,
        seed=config.seed,
        params=_params(config),
        status=reached.status or "completed",
        steps=step,
        memorized_step=reached.memorized_step,
        generalized_step=reached.generalized_step,
        final={k: history[k][-1] for k in FINAL},
        wall_time_s=wall_time,
        metrics=history,
        state_dict={n: p[i].detach().cpu().clone() for n, p in {**stack.params, **runs.buffers}.items()},
        data=runs.data[i].arrays() | kept,
        series=series,
        analysis=analysis,
        events=curve_events | ({"shrunk_step": runs.shrunk_at[i]} if shrinks(config) else {}),
        trained_by=trained_by,
        snapshots=recorder.snapshots.pop(run_id, {}),
    )


def _params(config: RunConfig) -> dict[str, object]:
    """A run's settings by dotted key, without the measures' (they say what was measured, not what was trained)."""
    return {k: v for k, v in run_params(config).items() if not k.startswith("measures.")}
