"""Regression on a quadratic teacher (Kumar et al. 2024): x ~ N(0, I_D), y = (beta . x)^2 / 2."""

from __future__ import annotations

import numpy as np
import torch

from groklab.config import TeacherTask
from groklab.data.dataset import RunData
from groklab.seeds import rng_for


def teacher_targets(x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """y = (beta . x)^2 / 2 for each row of x.

    >>> teacher_targets(np.array([[1.0, 2.0]]), np.array([0.6, 0.8])).round(4).tolist()
    [2.42]
    """
    return (x @ beta) ** 2 / 2


def make_teacher(task: TeacherTask, seed: int) -> RunData:
    """Fresh Gaussian train and test inputs and a unit teacher direction beta for one seed; targets are floats."""
    rng = rng_for(seed, "sample")
    beta = rng.standard_normal(task.dim)
    beta /= np.linalg.norm(beta)
    x = rng.standard_normal((task.n_train + task.n_test, task.dim))
    y = teacher_targets(x, beta)
    x_train, x_test, y_train, y_test = x[: task.n_train], x[task.n_train :], y[: task.n_train], y[task.n_train :]
    return RunData(
        x_train=torch.from_numpy(x_train).float(),
        y_train=torch.from_numpy(y_train).float(),
        x_test=torch.from_numpy(x_test).float(),
        y_test=torch.from_numpy(y_test).float(),
        y_train_clean=torch.from_numpy(y_train).float(),
        corrupted=torch.zeros(task.n_train, dtype=torch.bool),
        n_classes=1,
        vocab=None,
        info={"beta": beta},
    )
