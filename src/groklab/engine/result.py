"""What one run leaves behind: its summary row, curves, weights, data and measures — when finished, or its
progress so far (status running or interrupted; no weights) at each checkpoint of its stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


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
    """Events read off the curves (measures/curve_events.py): test-loss peak, delay, slingshots, phases."""
    trained_by: dict[str, Any] = field(default_factory=dict)
    """Where the run was trained: host, pid, device."""
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    """step -> the run's weights and buffers at that step (measures.snapshot_steps), as state_dict."""

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
            "trained_by": self.trained_by,
        }
