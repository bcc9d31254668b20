"""What a stack remembers of its runs: metrics at each evaluation, measure columns and series, events.

Scalar measures become metrics columns (NaN at evaluations that skip them: measures.every); vector
measures become series (name -> values at name.steps); final measures run once when a run finishes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from groklab.config import RunConfig, snapshot_schedule
from groklab.engine.stack import Stack
from groklab.measures import run_events, selected

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "weight_norm")


class Recorder:
    """History of every run of one stack, keyed by run id."""

    def __init__(self, run_ids: list[str], config: RunConfig) -> None:
        self.measures = selected(config)
        self.every = config.measures.every
        self.representation_steps = set(config.measures.representations.steps)
        self.snapshot_steps = set(snapshot_schedule(config.measures, config.train.steps))
        self.snapshots: dict[str, dict[int, dict[str, torch.Tensor]]] = {r: {} for r in run_ids}
        """run -> step -> its weights and buffers at measures.snapshot_steps (no run axis, on the CPU)."""
        self.history: dict[str, dict[str, list[float]]] = {r: {"step": [], **{m: [] for m in METRICS}} for r in run_ids}
        self.series: dict[str, dict[str, list[tuple[int, np.ndarray]]]] = {r: {} for r in run_ids}
        self.columns: list[str] = []  # scalar measure columns, known after the first measured evaluation
        self.evaluations = 0
        self.updates = [m for m in self.measures if m.when == "update"]
        """Measures of the step after each evaluation (update_norm): that step measures its update."""

    def state_dict(self) -> dict[str, Any]:
        """The runs' records so far (a finished run's are handed over with it and gone from here)."""
        return {
            "history": self.history,
            "series": {
                run: {
                    name: [(step, torch.from_numpy(array)) for step, array in points] for name, points in named.items()
                }
                for run, named in self.series.items()
            },
            "columns": self.columns,
            "evaluations": self.evaluations,
            "snapshots": self.snapshots,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history, self.snapshots = state["history"], state["snapshots"]
        self.columns, self.evaluations = state["columns"], state["evaluations"]
        self.series = {
            run: {name: [(step, array.numpy()) for step, array in points] for name, points in named.items()}
            for run, named in state["series"].items()
        }

    def record(self, stack: Stack, step: int, metrics: torch.Tensor) -> list[dict[str, float]]:
        """Append one evaluation of every run (metrics: (metric, run)); return each run's metrics row."""
        values = metrics.tolist()  # one host sync per evaluation
        measured: dict[str, np.ndarray] = {}
        due = [m for m in self.measures if m.when == "eval"] if self.evaluations % self.every == 0 else []
        due += [m for m in self.measures if m.when == "representation" and step in self.representation_steps]
        if due:
            probe = stack.probe(step)
            for measure in due:
                measured.update({k: v.detach().cpu().numpy() for k, v in measure.fn(probe).items()})
            if not self.columns:
                self.columns = [k for k, v in measured.items() if v.ndim == 1]
        self.evaluations += 1
        if step in self.snapshot_steps:
            weights = {**stack.params, **stack.runs.buffers}
            for i, run_id in enumerate(stack.runs.ids):
                self.snapshots[run_id][step] = {n: t[i].detach().cpu().clone() for n, t in weights.items()}
        rows = []
        for i, run_id in enumerate(stack.runs.ids):
            row = dict(zip(METRICS, (column[i] for column in values)))
            history = self.history[run_id]
            history["step"].append(step)
            for name, value in row.items():
                history[name].append(value)
            for name in self.columns:
                history.setdefault(name, []).append(float(measured[name][i]) if name in measured else math.nan)
            for measure in self.updates:
                history.setdefault(measure.name, []).append(math.nan)  # filled in after the next step
            for name, array in measured.items():
                if array.ndim > 1:
                    self.series[run_id].setdefault(name, []).append((step, array[i]))
            rows.append(row)
        return rows

    def record_update(self, stack: Stack, step: int) -> None:
        """The update measures of the step that followed the evaluation at `step`, into that evaluation's row."""
        probe = stack.probe(step)
        for measure in self.updates:
            for name, values in measure.fn(probe).items():
                for run_id, value in zip(stack.runs.ids, values.tolist()):
                    self.history[run_id][name][-1] = value

    def finish(
        self, stack: Stack, i: int, memorized: int | None, generalized: int | None
    ) -> tuple[dict[str, list[float]], dict[str, np.ndarray], dict[str, float], dict[str, Any]]:
        """A finished run's (history, series + final arrays, final scalars, events), handed over: the recorder
        keeps nothing of it."""
        run_id = stack.runs.ids[i]
        series: dict[str, np.ndarray] = {}
        for name, points in self.series.pop(run_id).items():
            series[name] = np.stack([array for _, array in points])
            series[f"{name}.steps"] = np.array([step for step, _ in points])
        analysis: dict[str, float] = {}
        finals = [m for m in self.measures if m.when == "final"]
        if finals:
            probe = stack.probe(int(self.history[run_id]["step"][-1]), run=i)
            for measure in finals:
                for name, value in measure.fn(probe)[0].items():
                    if np.ndim(value) == 0:
                        analysis[name] = float(value)
                    else:
                        series[name] = np.asarray(value)
        history = self.history.pop(run_id)
        return history, series, analysis, run_events(history, memorized, generalized)
