"""Task data: every run gets its own split (or sample), label noise and record of what was corrupted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from groklab.config import (
    AdditionTask,
    ArrayTask,
    FunctionTask,
    ImageTask,
    ModularTask,
    ParityTask,
    PermutationTask,
    SpecError,
    TeacherTask,
)
from groklab.config.tasks import TaskSizes
from groklab.data.addition import addition_table, make_addition
from groklab.data.arrays import check_arrays, data_sizes, make_arrays
from groklab.data.dataset import RunData
from groklab.data.images import check_images, decode_idx, encode_idx, make_images, read_idx
from groklab.data.modular import make_modular, modular_table, operation_table
from groklab.data.parity import make_parity
from groklab.data.permutation import make_permutation, permutation_table
from groklab.data.teacher import make_teacher

__all__ = [
    "RunData",
    "addition_table",
    "check_data",
    "decode_idx",
    "encode_idx",
    "make_addition",
    "make_data",
    "task_sizes",
    "make_images",
    "make_modular",
    "make_parity",
    "make_permutation",
    "make_teacher",
    "modular_table",
    "operation_table",
    "permutation_table",
    "read_idx",
]

AnyTask = ModularTask | PermutationTask | AdditionTask | ParityTask | ImageTask | TeacherTask | ArrayTask | FunctionTask


MAKERS: dict[str, Callable[[Any, int], RunData]] = {
    "modular": make_modular,
    "permutation": make_permutation,
    "addition": make_addition,
    "parity": make_parity,
    "images": make_images,
    "teacher": make_teacher,
    "arrays": make_arrays,
    "function": make_arrays,
}
"""task.name -> the function that makes one run's data from the task and the run's seed."""

VALIDATORS: dict[str, Callable[[Any], None]] = {
    "modular": lambda task: _check_split(task, modular_table(task)[1]),
    "permutation": lambda task: _check_split(task, permutation_table(task.operation, task.degree)[1]),
    "images": check_images,
    "arrays": check_arrays,
    "function": check_arrays,
}
"""task.name -> what can only be checked by making (part of) its data: raises SpecError. The other tasks' sets are
non-empty by their configs (n_train, n_test >= 1; n_train below the pairs)."""


def task_sizes(task: AnyTask) -> TaskSizes:
    """What the plan and the memory estimate need of a task: from its config, or (your data) from its arrays."""
    return data_sizes(task) if isinstance(task, ArrayTask | FunctionTask) else task.sizes


def make_data(task: AnyTask, seed: int) -> RunData:
    """The data of one run of `task` with seed `seed` (deterministic)."""
    return MAKERS[task.name](task, seed)


def check_data(task: AnyTask) -> None:
    """Raise SpecError when the runs of `task` would get an empty training or test set (for any seed: the
    split sizes do not depend on it), or when its images cannot be read, before anything is trained or written."""
    if (validate := VALIDATORS.get(task.name)) is not None:
        validate(task)


def _check_split(task: ModularTask | PermutationTask, labels: np.ndarray) -> None:
    """A table task's split leaves a training and a test example."""
    held_out = int(np.isin(labels, task.holdout_labels).sum())
    eligible = len(labels) - held_out
    n_train = int(round(task.train_fraction * eligible))
    if n_train == 0:
        reason = "every label is held out" if eligible == 0 else f"{task.train_fraction} of {eligible} eligible pairs"
        raise SpecError(f"task.train_fraction: no training example ({reason}); allowed: a split with at least one")
    if n_train == len(labels):
        raise SpecError(f"task.train_fraction: {task.train_fraction} leaves an empty test set; allowed: below 1")
