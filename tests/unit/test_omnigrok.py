"""Omnigrok's claims checked on hand-made curves: test accuracy lagging train accuracy at one init scale and
keeping up at another, and the Goldilocks weight norm at generalization."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from groklab.expectations import CHECKS
from groklab.store.reader import ExperimentResult


def _result(tmp_path: Path, curves: dict[float, tuple[list[float], list[float], list[float]]]) -> ExperimentResult:
    """One run per init scale: (train_acc, test_acc, weight_norm) evaluated every 100 steps."""
    rows = []
    for i, (alpha, (train, test, norm)) in enumerate(curves.items()):
        run_dir = tmp_path / "runs" / f"run-{i:04d}"
        run_dir.mkdir(parents=True)
        steps = [100 * k for k in range(len(train))]
        frame = {"step": steps, "train_acc": train, "test_acc": test, "weight_norm": norm}
        pd.DataFrame(frame).to_parquet(run_dir / "metrics.parquet")
        rows.append({"run_id": f"run-{i:04d}", "seed": 0, "status": "completed", "steps": steps[-1],
                     "memorized_step": None, "generalized_step": None, "final": {}, "events": {}, "analysis": {},
                     "params": {"model.init_scale": alpha}})  # fmt: skip
    return ExperimentResult(root=tmp_path, spec={"name": "x"}, meta={}, rows=rows)


CURVES = {
    1.0: ([0.5, 0.99, 1.0, 1.0, 1.0, 1.0], [0.4, 0.9, 0.92, 0.93, 0.93, 0.93], [10, 11, 11, 11, 11, 11]),
    8.0: ([0.9, 0.99, 1.0, 1.0, 1.0, 1.0], [0.1, 0.1, 0.2, 0.5, 0.91, 0.92], [80, 70, 40, 20, 12, 11]),
    16.0: ([0.9, 1.0, 1.0, 1.0, 1.0, 1.0], [0.1] * 6, [160] * 6),  # never generalizes
}


def test_test_accuracy_lags_at_large_alpha_and_keeps_up_at_one(tmp_path: Path) -> None:
    result = _result(tmp_path, CURVES)
    lags, keeps_up = CHECKS["test_lags_train"].fn, CHECKS["test_keeps_up"].fn
    key = "model.init_scale"
    assert lags(result, key=key, value=8, factor=3) == (
        "at model.init_scale = 8: train at step 100, test at step 400 (4.0x)",
        True,
    )
    assert lags(result, key=key, value=8, factor=5)[1] is False
    assert lags(result, key=key, value=1, factor=3)[1] is False  # together: no lag
    assert lags(result, key=key, value=16, factor=3) == (
        "at model.init_scale = 16: train at step 100, test at step never",
        False,
    )  # never generalizing is not grokking
    assert keeps_up(result, key=key, value=1, factor=1.5)[1] is True
    assert keeps_up(result, key=key, value=8, factor=1.5)[1] is False
    assert lags(result, key=key, value=3, factor=3)[1] is None  # no such sweep point
    assert lags(result, key="optimizer.lr", value=3, factor=3)[1] is None


def test_the_norm_falls_toward_where_small_alpha_generalizes(tmp_path: Path) -> None:
    result = _result(tmp_path, CURVES)
    falls = CHECKS["norm_falls_to_generalize"].fn
    assert falls(result, key="model.init_scale", value=8) == (
        "at model.init_scale = 8: weight norm 80 at init, 70 at train_acc 0.99, 12 at test_acc 0.9; the smallest "
        "model.init_scale generalizes at 11",
        True,
    )
    assert falls(result, key="model.init_scale", value=16)[1] is False  # never generalizes
    # a norm that grows on its way to generalizing breaks the claim, as does one that falls past the zone
    grown = {**CURVES, 8.0: (CURVES[8.0][0], CURVES[8.0][1], [8, 9, 10, 11, 12, 12])}
    assert falls(_result(tmp_path / "grown", grown), key="model.init_scale", value=8)[1] is False
    past = {**CURVES, 8.0: (CURVES[8.0][0], CURVES[8.0][1], [80, 20, 10, 5, 1, 1])}
    assert falls(_result(tmp_path / "past", past), key="model.init_scale", value=8)[1] is False
    assert falls(result, key="model.init_scale", value=3)[1] is None
