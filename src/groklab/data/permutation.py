"""Products in the symmetric group S_n (Power et al. 2022: S5, 120 permutations)."""

from __future__ import annotations

import itertools

import numpy as np

from groklab.config import PermutationTask
from groklab.data.dataset import RunData, split_table


def permutations(degree: int) -> np.ndarray:
    """All permutations of 0..degree-1 in lexicographic order, (n!, degree); row 0 is the identity."""
    return np.array(list(itertools.permutations(range(degree))), dtype=np.int64)


def compose(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(x y)(i) = x(y(i)) for permutations in one-line notation, row-wise: (..., n) x (..., n)."""
    return np.take_along_axis(x, y, axis=-1)


def inverse(x: np.ndarray) -> np.ndarray:
    """x^-1, row-wise."""
    return np.argsort(x, axis=-1)


def permutation_table(operation: str, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (x, y) of S_degree as indices (N, 2) and the index of x y, x y x^-1 or x y x (N,).

    >>> pairs, labels = permutation_table("xy", 3)
    >>> pairs[1 * 6 + 2].tolist(), int(labels[1 * 6 + 2])
    ([1, 2], 4)
    """
    elements = permutations(degree)
    n = len(elements)
    index = {tuple(p): i for i, p in enumerate(elements.tolist())}
    x_index, y_index = (g.ravel() for g in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    x, y = elements[x_index], elements[y_index]
    if operation == "xy":
        product = compose(x, y)
    elif operation == "xyx^-1":
        product = compose(compose(x, y), inverse(x))
    else:  # xyx
        product = compose(compose(x, y), x)
    labels = np.array([index[tuple(p)] for p in product.tolist()], dtype=np.int64)
    return np.stack([x_index, y_index], axis=1).astype(np.int64), labels


def make_permutation(task: PermutationTask, seed: int) -> RunData:
    """The data of one run: the product table of S_n, split and corrupted for this seed."""
    pairs, labels = permutation_table(task.operation, task.degree)
    return split_table(pairs, labels, task, seed)
