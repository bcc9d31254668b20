"""Task data: every run gets its own split (or sample), label noise and record of what was corrupted."""

from __future__ import annotations

from groklab.config import ModularTask, ParityTask
from groklab.data.dataset import RunData
from groklab.data.modular import make_modular, operation_table
from groklab.data.parity import make_parity

__all__ = ["RunData", "make_data", "make_modular", "make_parity", "operation_table"]


def make_data(task: ModularTask | ParityTask, seed: int) -> RunData:
    """The data of one run of `task` with seed `seed` (deterministic)."""
    if isinstance(task, ModularTask):
        return make_modular(task, seed)
    return make_parity(task, seed)
