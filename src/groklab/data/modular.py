"""Modular arithmetic: a ∘ b mod p over all pairs (Power et al. 2022), split and corrupted per seed."""

from __future__ import annotations

import numpy as np

from groklab.config import ModularTask
from groklab.data.dataset import RunData, split_table


def operation_table(operation: str, p: int, nonzero_b: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All eligible pairs (a, b) and their labels a ∘ b mod p.

    Returns pairs (N, 2) int64 and labels (N,) int64. Division pairs have b != 0 and label
    a * b^-1 mod p, so that label * b == a (mod p): division really inverts multiplication.
    With nonzero_b every operation leaves out b = 0.

    >>> pairs, labels = operation_table("add", 5)
    >>> pairs[7].tolist(), int(labels[7])
    ([1, 2], 3)
    """
    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    if operation == "div" or nonzero_b:
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


def modular_table(task: ModularTask) -> tuple[np.ndarray, np.ndarray]:
    """The task's table: its operation's pairs and labels (operation_table), without b = 0 if it says so."""
    return operation_table(task.operation, task.modulus, task.nonzero_b)


def make_modular(task: ModularTask, seed: int) -> RunData:
    """The data of one run: the table of a ∘ b mod p, split and corrupted for this seed."""
    pairs, labels = modular_table(task)
    return split_table(pairs, labels, task, seed)
