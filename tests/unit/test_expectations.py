"""The claim checks against hand-made results: failed runs count, thresholds, Doshi's phase counts."""

from __future__ import annotations

from pathlib import Path

from groklab.expectations import EXPECTATIONS
from groklab.expectations.base import by_value, reached
from groklab.store.reader import ExperimentResult


def _result(name: str, rows: list[tuple[float, int | None]], key: str = "task.label_noise") -> ExperimentResult:
    """Runs (swept value, generalized step); every run memorized at step 100."""
    return ExperimentResult(
        root=Path("."),
        spec={"name": name},
        meta={},
        rows=[
            {
                "run_id": f"run-{i:04d}",
                "seed": 0,
                "status": "completed",
                "steps": 5000,
                "memorized_step": 100,
                "generalized_step": step,
                "final": {"train_acc": 1.0, "test_acc": 1.0 if step else 0.5, "train_loss": 0.0, "test_loss": 1.0},
                "events": {"grokking_delay": None if step is None else step - 100},
                "analysis": {},
                "params": {key: value},
            }
            for i, (value, step) in enumerate(rows)
        ],
    )


def test_runs_that_never_generalize_count_in_the_median() -> None:
    result = _result("x", [(0.0, 1000), (0.0, 1200), (0.0, 1400), (0.1, None), (0.1, 3000), (0.1, None)])
    steps = by_value(result, "task.label_noise", "generalized_step")
    assert steps[0.0] == 1200 and steps[0.1] != steps[0.1]  # 1 of 3 is not a median: never
    assert reached(result, "task.label_noise", "generalized_step") == {0.0: "3/3", 0.1: "1/3"}


def test_label_flip_threshold_and_delay() -> None:
    delay, threshold = (e.check for e in EXPECTATIONS["parity-label-flip"])
    grid = [(0.0, 1000), (0.0, 1100), (0.02, 2000), (0.02, 2500), (0.05, None), (0.05, None)]
    result = _result("parity-label-flip", grid)
    assert delay(result) == ("median generalization step 1050 at p_t = 0, 2250 at p_t = 0.02", True)
    measured, met = threshold(result)
    assert met is True and measured.startswith("threshold 0.05")
    # A value above the threshold that generalizes again breaks "every smaller value generalizes" only below it.
    measured, met = threshold(_result("parity-label-flip", [(0.0, None), (0.1, 2000), (0.2, None)]))
    assert measured.startswith("threshold 0 ") and met is False
    assert delay(_result("parity-label-flip", [(0.0, 1000), (0.1, None)]))[1] is None  # nothing to compare
