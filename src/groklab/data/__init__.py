"""Task data: every run gets its own split (or sample), label noise and record of what was corrupted."""

from __future__ import annotations

from groklab.config import ModularTask, ParityTask, PermutationTask
from groklab.data.dataset import RunData
from groklab.data.modular import make_modular, operation_table
from groklab.data.parity import make_parity
from groklab.data.permutation import make_permutation, permutation_table

__all__ = [
    "RunData",
    "make_data",
    "make_modular",
    "make_parity",
    "make_permutation",
    "operation_table",
    "permutation_table",
]


def make_data(task: ModularTask | PermutationTask | ParityTask, seed: int) -> RunData:
    """The data of one run of `task` with seed `seed` (deterministic)."""
    if isinstance(task, ModularTask):
        return make_modular(task, seed)
    if isinstance(task, PermutationTask):
        return make_permutation(task, seed)
    return make_parity(task, seed)
