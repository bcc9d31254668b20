"""Grokking events of one run, read at evaluated steps.

memorized_step: first evaluated step with train accuracy >= 0.99.
generalized_step: first evaluated step with test accuracy >= 0.99.
diverged: a train or test loss that is NaN or infinite; that run stops, the others go on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

THRESHOLD = 0.99


@dataclass
class RunEvents:
    """Event steps of one run and the rule that stops it."""

    steps: int
    """The run's budget of optimizer steps."""
    stop_after_generalized: int | None
    memorized_step: int | None = None
    generalized_step: int | None = None
    status: str | None = None
    """None while training; then completed, stopped (early, after generalizing) or diverged."""

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
        return events
