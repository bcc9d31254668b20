"""What a stack's training tells the world: one listener, five moments.

The loop (engine/loop.py) knows nothing of files, trackers or progress bars: it tells one Listener when the stack
starts, after each evaluation, when a checkpoint is due, when a run is done and how many run-steps went by. The runner
composes the store, the trackers, the progress bar (and, in tests, an injected fault) into one (Listeners).
"""

from __future__ import annotations

from groklab.engine.checkpoint import Checkpoint
from groklab.engine.result import RunResult


class Listener:
    """Hears one stack train; every moment does nothing here, a listener overrides those it needs."""

    checkpoints = False
    """Whether it keeps checkpoints: only then does the loop build the stack's state (every train.checkpoint_every
    steps, or ~5 minutes, and before stopping when asked to) and hand it to on_checkpoint."""

    def on_start(self, progress: list[RunResult]) -> None:
        """The stack starts (or resumes): its runs as they stand (status running; curves so far, no weights)."""

    def on_evaluation(self, run_id: str, step: int, metrics: dict[str, float], milestones: list[str]) -> None:
        """One run was evaluated: its metrics and scalar measures at this step (NaN left out), and the milestones
        it reached here (memorized, generalized, diverged; usually none)."""

    def on_checkpoint(self, checkpoint: Checkpoint, progress: list[RunResult]) -> None:
        """A checkpoint is due: the stack's state, and its unfinished runs as they stand (status running, or
        interrupted when a stop was asked for)."""

    def on_run_done(self, result: RunResult) -> None:
        """A run finished and left the stack: everything it leaves behind."""

    def on_progress(self, steps: int, milestones: list[tuple[str, str]]) -> None:
        """`steps` more run-steps were trained (a run that stops early counts its unused budget), and these
        (run id, milestone) were reached."""


class Listeners(Listener):
    """Several listeners heard as one, in order."""

    def __init__(self, *listeners: Listener) -> None:
        self.listeners = listeners
        self.checkpoints = any(listener.checkpoints for listener in listeners)

    def on_start(self, progress: list[RunResult]) -> None:
        for listener in self.listeners:
            listener.on_start(progress)

    def on_evaluation(self, run_id: str, step: int, metrics: dict[str, float], milestones: list[str]) -> None:
        for listener in self.listeners:
            listener.on_evaluation(run_id, step, metrics, milestones)

    def on_checkpoint(self, checkpoint: Checkpoint, progress: list[RunResult]) -> None:
        for listener in self.listeners:
            listener.on_checkpoint(checkpoint, progress)

    def on_run_done(self, result: RunResult) -> None:
        for listener in self.listeners:
            listener.on_run_done(result)

    def on_progress(self, steps: int, milestones: list[tuple[str, str]]) -> None:
        for listener in self.listeners:
            listener.on_progress(steps, milestones)
