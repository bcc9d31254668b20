"""Regression on a quadratic teacher (Kumar et al. 2024): x ~ N(0, I_D), y = (beta . x)^2 / 2."""

from __future__ import annotations

import numpy as np

from groklab.config import FunctionTask, TeacherTask
from groklab.data.arrays import make_arrays
from groklab.data.dataset import RunData
from groklab.seeds import rng_for


def teacher_targets(x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """y = (beta . x)^2 / 2 for each row of x.

    >>> teacher_targets(np.array([[1.0, 2.0]]), np.array([0.6, 0.8])).round(4).tolist()
    [2.42]
    """
    return (x @ beta) ** 2 / 2


def teacher_arrays(seed: int, dim: int, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    """One seed's data as a function task's factory returns it: fresh Gaussian train and test inputs, a unit
    teacher direction beta (kept with the run's data), and their float targets."""
    rng = rng_for(seed, "sample")
    beta = rng.standard_normal(dim)
    beta /= np.linalg.norm(beta)
    x = rng.standard_normal((n_train + n_test, dim))
    y = teacher_targets(x, beta)
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:], "beta": beta}


def make_teacher(task: TeacherTask, seed: int) -> RunData:
    """The teacher's data through the interface your own data uses (task.name function): a regression whose
    factory is teacher_arrays."""
    kwargs = {"dim": task.dim, "n_train": task.n_train, "n_test": task.n_test}
    return make_arrays(FunctionTask(factory=f"{__name__}:teacher_arrays", kwargs=kwargs, kind="regression"), seed)
