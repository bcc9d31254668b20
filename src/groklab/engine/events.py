"""Grokking events of one run, read at evaluated steps.

memorized_step: first evaluated step with train accuracy >= 0.99.
generalized_step: first evaluated step with test accuracy >= 0.99.
diverged: a train or test loss that is NaN or infinite; that run stops, the others go on.
settled: after generalizing, train and test accuracy each stayed within a tolerance over a window of steps
(train.stop_when_settled): the run has reached its phase and stops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

THRESHOLD = 0.99


@dataclass
class RunEvents:
    """Event steps of one run and the rule that stops it."""

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

    def observe(self, step: int, train_loss: float, train_acc: float, test_loss: float, test_acc: float) -> list[str]:
        """Record an evaluation; return the events it triggered (memorized, generalized, diverged)."""
        events = []
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            self.status = "diverged"
            return ["diverged"]
        if self.memorized_step is None and train_acc >= THRESHOLD:
            self.memorized_step = step
            events.append("memorized")
        if self.generalized_step is None and test_acc >= THRESHOLD:
            self.generalized_step = step
            events.append("generalized")
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
        return events

    def _within_tolerance(self) -> bool:
        for column in (1, 2):
            values = [r[column] for r in self.recent]
            if max(values) - min(values) > self.settle_tolerance:
                return False
        return True
