"""Integer addition over unordered pairs (Liu et al. 2022's toy task), split and corrupted per seed."""

from __future__ import annotations

import numpy as np

from groklab.config import AdditionTask
from groklab.data.dataset import RunData, table_data
from groklab.seeds import rng_for


def addition_table(p: int) -> tuple[np.ndarray, np.ndarray]:
    """The unordered pairs (a, b), a <= b, in Liu et al.'s order (measures/liu.py), and their sums.

    >>> pairs, labels = addition_table(3)
    >>> pairs.tolist(), labels.tolist()
    ([[0, 0], [0, 1], [0, 2], [1, 1], [1, 2], [2, 2]], [0, 1, 2, 2, 3, 4])
    """
    pairs = np.array([(a, b) for a in range(p) for b in range(a, p)], dtype=np.int64)
    return pairs, pairs.sum(axis=1)


def make_addition(task: AdditionTask, seed: int) -> RunData:
    """The data of one run: n_train pairs drawn without replacement for training, the rest for testing."""
    pairs, labels = addition_table(task.operands)
    train_index = np.sort(rng_for(seed, "split").choice(len(pairs), size=task.n_train, replace=False))
    test_index = np.setdiff1d(np.arange(len(pairs)), train_index)
    return table_data(pairs, labels, train_index, test_index, task, seed, vocab=task.operands)
