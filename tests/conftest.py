"""Shared fixtures: tiny configs that train in well under a second."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from groklab import RunConfig

collect_ignore_glob = ["plugin_*"]
"""The plugin packages that test_plugins.py pip-installs: never imported by the suite itself (one raises on import
on purpose, and the other would register its measure in this process)."""

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


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    """Every process a test starts (a `groklab run`, a worker pool, a Dask scheduler) is killed when the test ends,
    pass or fail, with everything it started: a failed test must not leave a run training on a machine that is
    already busy. Processes started before the test (a module's fixtures) are not its own, nor what they start."""
    here = psutil.Process()
    before = {child.pid for child in here.children()}
    yield
    started = [child for child in here.children() if child.pid not in before and not _shared_helper(child)]
    family = [p for child in started for p in _with_descendants(child)]
    for process in family:
        try:
            process.kill()
        except psutil.Error:
            pass  # already gone
    psutil.wait_procs(family, timeout=30)


def _with_descendants(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


def _shared_helper(process: psutil.Process) -> bool:
    """multiprocessing's resource tracker: started once for the whole session by the first pool, shared by all."""
    try:
        return any("resource_tracker" in word for word in process.cmdline())
    except psutil.Error:
        return True
