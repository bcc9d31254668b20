"""The data of one run, and the splitting / corruption every task shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from groklab.seeds import rng_for


@dataclass(frozen=True)
class RunData:
    """Train and test tensors of one run.

    x is int64 tokens (n, 2) for modular tasks (operands a, b), float (n, n_bits) in {-1, 1} for parity, or
    float (n, pixels) in [0, 1] for images;
    y is int64 class labels (n,). y_train carries the label noise; y_train_clean does not.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    y_train_clean: torch.Tensor
    corrupted: torch.Tensor
    """(n_train,) bool: True where the training label was replaced by label noise."""
    n_classes: int
    vocab: int | None
    """Number of distinct values per input token (p), or None for vector inputs."""
    info: dict[str, Any] = field(default_factory=dict)
    """Task facts worth storing (parity coordinates, the train/test index into the full table)."""
    inputs_stored: bool = True
    """Whether the store keeps x_train and x_test; False for images, which info's indices name in their dataset."""

    @property
    def input_dim(self) -> int:
        """Width of one input: tokens per example for token tasks, n_bits for vectors."""
        return int(self.x_train.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything as numpy arrays, for the store."""
        tensors = {"x_train": self.x_train, "x_test": self.x_test} if self.inputs_stored else {}
        tensors |= {
            "y_train": self.y_train,
            "y_test": self.y_test,
            "y_train_clean": self.y_train_clean,
            "corrupted": self.corrupted,
        }
        arrays = {name: t.numpy() for name, t in tensors.items()}
        arrays.update({k: np.asarray(v) for k, v in self.info.items()})
        return arrays


def corrupt_labels(
    labels: np.ndarray, fraction: float, n_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Replace exactly round(fraction * n) labels by a different label, uniform over the other classes.

    Returns (noisy labels, corrupted mask). For two classes this is a flip.
    """
    n = len(labels)
    n_corrupt = int(round(fraction * n))
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=n_corrupt, replace=False)] = True
    # Adding a shift in 1..C-1 mod C gives every other class with equal probability, never the same one.
    shift = rng.integers(1, n_classes, size=n_corrupt)
    noisy = labels.copy()
    noisy[mask] = (labels[mask] + shift) % n_classes
    return noisy, mask


def split_table(pairs: np.ndarray, labels: np.ndarray, task: Any, seed: int) -> RunData:
    """Split a full operation table for one run: held-out labels to test, then a random train_fraction
    of the rest to train (the others to test); then corrupt label_noise of the training labels.

    `task` is a ModularTask or PermutationTask (train_fraction, holdout_labels, label_noise, n_labels).
    """
    held_out = np.isin(labels, task.holdout_labels)
    eligible = np.flatnonzero(~held_out)
    n_train = int(round(task.train_fraction * len(eligible)))
    if n_train == 0:
        raise ValueError(f"task.train_fraction: {task.train_fraction} leaves no training examples")
    order = rng_for(seed, "split").permutation(eligible)
    train_index = np.sort(order[:n_train])
    test_index = np.sort(np.concatenate([order[n_train:], np.flatnonzero(held_out)]))
    if len(test_index) == 0:
        raise ValueError("task.train_fraction: 1 with no held-out examples leaves an empty test set")
    return table_data(pairs, labels, train_index, test_index, task, seed, vocab=task.n_labels)


def table_data(
    pairs: np.ndarray,
    labels: np.ndarray,
    train_index: np.ndarray,
    test_index: np.ndarray,
    task: Any,
    seed: int,
    vocab: int,
) -> RunData:
    """A run's data from a table and its split: the training labels corrupted (task.label_noise of task.n_labels
    classes, from the run's noise stream), the split's indices into the table kept in `info`."""
    n_classes = task.n_labels
    y_train, corrupted = corrupt_labels(labels[train_index], task.label_noise, n_classes, rng_for(seed, "noise"))
    return RunData(
        x_train=torch.from_numpy(pairs[train_index]),
        y_train=torch.from_numpy(y_train),
        x_test=torch.from_numpy(pairs[test_index]),
        y_test=torch.from_numpy(labels[test_index]),
        y_train_clean=torch.from_numpy(labels[train_index]),
        corrupted=torch.from_numpy(corrupted),
        n_classes=n_classes,
        vocab=vocab,
        info={"train_index": train_index, "test_index": test_index},
    )
