"""Sparse (n, k)-parity (Barak et al. 2022): label = product of k fixed coordinates of x in {-1,1}^n."""

from __future__ import annotations

import numpy as np
import torch

from groklab.config import ParityTask
from groklab.data.dataset import RunData, corrupt_labels
from groklab.seeds import rng_for


def parity_classes(x: np.ndarray, coordinates: list[int]) -> np.ndarray:
    """Class 0 where prod_{i in coordinates} x_i = +1, class 1 where it is -1.

    >>> parity_classes(np.array([[-1, 1, 1, -1]]), [0, 1]).tolist()
    [1]
    """
    product = np.prod(x[:, coordinates], axis=1)
    return (product < 0).astype(np.int64)


def make_parity(task: ParityTask, seed: int) -> RunData:
    """Fresh train and test samples for one seed; training labels flipped by label_noise, test clean."""
    rng = rng_for(seed, "sample")
    x = rng.choice(np.array([-1.0, 1.0]), size=(task.n_train + task.n_test, task.n_bits))
    labels = parity_classes(x, task.relevant)
    x_train, x_test = x[: task.n_train], x[task.n_train :]
    clean, y_test = labels[: task.n_train], labels[task.n_train :]
    y_train, corrupted = corrupt_labels(clean, task.label_noise, 2, rng_for(seed, "noise"))
    return RunData(
        x_train=torch.from_numpy(x_train).float(),
        y_train=torch.from_numpy(y_train),
        x_test=torch.from_numpy(x_test).float(),
        y_test=torch.from_numpy(y_test),
        y_train_clean=torch.from_numpy(clean),
        corrupted=torch.from_numpy(corrupted),
        n_classes=2,
        vocab=None,
        info={"coordinates": np.array(task.relevant)},
    )
