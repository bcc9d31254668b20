"""The milestones of one run, read at evaluated steps, and the rule that stops it.

memorized_step: first evaluated step with train accuracy >= 0.99.
generalized_step: first evaluated step with test accuracy >= 0.99.
diverged: a train or test loss that is NaN or infinite; that run stops, the others go on.
settled: after generalizing, train and test accuracy each stayed within a tolerance over a window of steps
(train.stop_when_settled): the run has reached its phase and stops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from groklab.config import RunConfig

THRESHOLD = 0.99
PROGRESS = ("memorized_step", "generalized_step", "status", "recent")
"""The fields that evaluations change."""


@dataclass
class Milestones:
    """When one run memorized and generalized (or diverged), and whether it is done."""

    steps: int
    """The run's budget of optimizer steps."""
    stop_after_generalized: int | None
    stop_when_settled: int | None = None
    """Window (steps) over which a generalized run's accuracies must stay within settle_tolerance to stop it."""
    settle_tolerance: float = 0.0
    memorized_step: int | None = None
    generalized_step: int | None = None
    status: str | None = None
    """None while training; then completed, stopped (early, after generalizing) or diverged."""
    recent: list[tuple[int, float, float]] = field(default_factory=list)
    """(step, train_acc, test_acc) of the evaluations inside the settling window."""

    def state_dict(self) -> dict[str, Any]:
        """What evaluations changed (the rest comes from the run's config)."""
        return {name: getattr(self, name) for name in PROGRESS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in PROGRESS:
            setattr(self, name, state[name])

    def observe(self, step: int, train_loss: float, train_acc: float, test_loss: float, test_acc: float) -> list[str]:
        """Record an evaluation; return the milestones it reached (memorized, generalized, diverged)."""
        reached = []
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            self.status = "diverged"
            return ["diverged"]
        if self.memorized_step is None and train_acc >= THRESHOLD:
            self.memorized_step = step
            reached.append("memorized")
        if self.generalized_step is None and test_acc >= THRESHOLD:
            self.generalized_step = step
            reached.append("generalized")
        if step >= self.steps:
            self.status = "completed"
        elif (
            self.stop_after_generalized is not None
            and self.generalized_step is not None
            and step >= self.generalized_step + self.stop_after_generalized
        ):
            self.status = "stopped"
        elif self.generalized_step is not None and self.stop_when_settled is not None:
            start = step - self.stop_when_settled
            self.recent.append((step, train_acc, test_acc))
            while len(self.recent) > 1 and self.recent[1][0] <= start:  # keep one evaluation at or before start
                self.recent.pop(0)
            if self.recent[0][0] <= start and self._within_tolerance():
                self.status = "stopped"
        return reached

    @classmethod
    def of(cls, config: RunConfig) -> Milestones:
        """A run's milestones, none reached yet, with its budget and stopping rule."""
        train = config.train
        return cls(train.steps, train.stop_after_generalized, train.stop_when_settled, train.settle_tolerance)

    def _within_tolerance(self) -> bool:
        for column in (1, 2):
            values = [r[column] for r in self.recent]
            if max(values) - min(values) > self.settle_tolerance:
                return False
        return True
