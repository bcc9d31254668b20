"""Shared fixtures: tiny configs that train in well under a second."""

from __future__ import annotations

import os
from typing import Any

import pytest

from groklab import RunConfig

TINY_MODULAR: dict[str, Any] = {
    "task": {"name": "modular", "operation": "add", "modulus": 23, "train_fraction": 0.5},
    "model": {"name": "mlp", "width": 128, "activation": "quadratic", "bias": False, "init": "gromov"},
    "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 5.0, "betas": [0.9, 0.98]},
    "train": {"steps": 300, "loss": "mse", "eval_every": 5},
}


@pytest.fixture
def tiny_modular() -> RunConfig:
    """Gromov's MLP on (a+b) mod 23: memorizes by ~25 steps, generalizes by ~110."""
    return RunConfig.model_validate(TINY_MODULAR)


@pytest.fixture
def device() -> str:
    """Where the engine tests train: cpu, or GROKLAB_TEST_DEVICE (e.g. cuda on a machine with a GPU: the same
    tests then check stacked == alone, dropout masks and bit-identical resume on the GPU)."""
    return os.environ.get("GROKLAB_TEST_DEVICE", "cpu")
