"""The progress bar: run-steps trained, with the count of runs memorized and generalized so far."""

from __future__ import annotations

import sys

from tqdm import tqdm

from groklab.config import Runs
from groklab.engine.listener import Listener


class ProgressBar(Listener):
    """tqdm over the run-steps of the runs left to train (a resumed stack reports the steps its checkpoint saved)."""

    def __init__(self, stacks: list[Runs], enabled: bool, finished: set[str]) -> None:
        self.budgets = {run_id: c.train.steps for stack in stacks for run_id, c in stack if run_id not in finished}
        self.total_runs = len(self.budgets)
        total = sum(self.budgets.values())
        self.bar = tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True, file=sys.stderr)
        self.counts = {"memorized": 0, "generalized": 0, "diverged": 0}

    def on_progress(self, steps: int, milestones: list[tuple[str, str]]) -> None:
        for _, milestone in milestones:
            self.counts[milestone] += 1
        c, n = self.counts, self.total_runs
        postfix = f"memorized {c['memorized']}/{n} generalized {c['generalized']}/{n}"
        if c["diverged"]:
            postfix += f" diverged {c['diverged']}"
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(steps)

    def skip(self, runs: Runs) -> None:
        """A stack another process trained (or a remote worker did): its runs' steps count as done here."""
        self.bar.update(sum(self.budgets.pop(run_id, 0) for run_id, _ in runs))

    def say(self, message: str) -> None:
        """One line on stderr, above the bar (shown with --quiet too)."""
        tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
