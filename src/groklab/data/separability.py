"""Beck, Levi, Bar-Sinai 2025 ("Grokking at the edge of linear separability"): one class of Gaussian points.

Every point has the same label, so predicting it everywhere (the bias alone) generalizes perfectly; a training set
that is linearly separable from the origin also lets the weights memorize it. N points in d dimensions are separable
from the origin with probability -> 1 when d / N > 1/2 and -> 0 below (Cover 1965): near that threshold logistic
regression lingers near the memorizing solution for arbitrarily long before it generalizes.
"""

from __future__ import annotations

import numpy as np

from groklab.seeds import rng_for


def one_class(seed: int, dim: int, n_train: int, n_test: int, noise: float = 1.0) -> dict[str, np.ndarray]:
    """One seed's data as a function task's factory returns it: x ~ N(0, noise^2 I_dim), every label 1 (of 2
    classes), fresh train and test points.

    >>> data = one_class(0, dim=3, n_train=4, n_test=2)
    >>> data["x_train"].shape, data["y_test"].tolist()
    ((4, 3), [1, 1])
    """
    x = noise * rng_for(seed, "sample").standard_normal((n_train + n_test, dim))
    y = np.ones(n_train + n_test, dtype=np.int64)
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:]}
