"""Full reproductions of the built-in experiments (minutes each): `python -m pytest -m slow`.

Each checks the source's claim on a real run, with the source's settings; CI skips them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import groklab


@pytest.mark.slow
def test_modular_addition_groks_in_tens_of_steps(tmp_path: Path) -> None:
    """Gromov 2023: train accuracy 100% within ~30 steps, test accuracy 100% by ~45."""
    result = groklab.run("modular-addition", out=tmp_path / "ma", progress=False)
    for row in result.rows:
        assert row["memorized_step"] <= 40 and row["generalized_step"] <= 80


@pytest.mark.slow
def test_nanda_modadd_test_loss_falls_below_one(tmp_path: Path) -> None:
    """Nanda et al. 2023: memorization by ~1.4k epochs, test loss < 1 near 13-14k epochs."""
    result = groklab.run("nanda-modadd", out=tmp_path / "nanda", sets=["train.steps=20000"], progress=False)
    metrics = result.metrics
    memorized = result.rows[0]["memorized_step"]
    below_one = metrics.loc[metrics["test_loss"] < 1.0, "step"]
    assert memorized is not None and memorized <= 3000
    assert len(below_one) and below_one.iloc[0] <= 20000
