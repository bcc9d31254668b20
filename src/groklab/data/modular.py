"""Modular arithmetic: a ∘ b mod p over all pairs (Power et al. 2022), split and corrupted per seed."""

from __future__ import annotations

import numpy as np
import torch

from groklab.config import ModularTask
from groklab.data.dataset import RunData, corrupt_labels, rng_for


def operation_table(operation: str, p: int) -> tuple[np.ndarray, np.ndarray]:
    """All eligible pairs (a, b) and their labels a ∘ b mod p.

    Returns pairs (N, 2) int64 and labels (N,) int64. Division pairs have b != 0 and label
    a * b^-1 mod p, so that label * b == a (mod p): division really inverts multiplication.

    >>> pairs, labels = operation_table("add", 5)
    >>> pairs[7].tolist(), int(labels[7])
    ([1, 2], 3)
    """
    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    if operation == "div":
        a, b = a[b != 0], b[b != 0]
    x, y = a.astype(object), b.astype(object)  # Python ints: x^3 of p ~ 1e3 overflows nothing, any p works
    results = {
        "add": lambda: x + y,
        "sub": lambda: x - y,
        "mul": lambda: x * y,
        "div": lambda: x * np.array([pow(int(v), -1, p) for v in y], dtype=object),
        "x2+y2": lambda: x**2 + y**2,
        "x2+xy+y2": lambda: x**2 + x * y + y**2,
        "x2+xy+y2+x": lambda: x**2 + x * y + y**2 + x,
        "x3+xy": lambda: x**3 + x * y,
        "x3+xy2+y": lambda: x**3 + x * y**2 + y,
    }
    labels = (results[operation]() % p).astype(np.int64)
    return np.stack([a, b], axis=1).astype(np.int64), labels


def make_modular(task: ModularTask, seed: int) -> RunData:
    """The split of one run: held-out labels to test, then a random train_fraction of the rest to train."""
    pairs, labels = operation_table(task.operation, task.modulus)
    held_out = np.isin(labels, task.holdout_labels)
    eligible = np.flatnonzero(~held_out)
    n_train = int(round(task.train_fraction * len(eligible)))
    if not 0 < n_train:
        raise ValueError(f"task.train_fraction: {task.train_fraction} leaves no training examples")
    order = rng_for(seed, "split").permutation(eligible)
    train_index = np.sort(order[:n_train])
    test_index = np.sort(np.concatenate([order[n_train:], np.flatnonzero(held_out)]))
    if len(test_index) == 0:
        raise ValueError("task.train_fraction: 1 with no held-out examples leaves an empty test set")
    y_train, corrupted = corrupt_labels(labels[train_index], task.label_noise, task.modulus, rng_for(seed, "noise"))
    return RunData(
        x_train=torch.from_numpy(pairs[train_index]),
        y_train=torch.from_numpy(y_train),
        x_test=torch.from_numpy(pairs[test_index]),
        y_test=torch.from_numpy(labels[test_index]),
        y_train_clean=torch.from_numpy(labels[train_index]),
        corrupted=torch.from_numpy(corrupted),
        n_classes=task.modulus,
        vocab=task.modulus,
        info={"train_index": train_index, "test_index": test_index},
    )
