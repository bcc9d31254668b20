"""The grid and curve-shape checks on hand-made curves: later at smaller sizes, a count dropping by
generalization, double descent over size and over steps."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from groklab.expectations import CHECKS
from groklab.store.reader import ExperimentResult


def _result(tmp_path: Path, runs: list[dict]) -> ExperimentResult:
    """Runs: {value, curve: {column: [...]}, memorized, generalized, final_test_loss}; evaluated every 100 steps."""
    rows = []
    for i, run in enumerate(runs):
        run_dir = tmp_path / "runs" / f"run-{i:04d}"
        run_dir.mkdir(parents=True)
        n = len(next(iter(run["curve"].values())))
        pd.DataFrame({"step": [100 * k for k in range(n)], **run["curve"]}).to_parquet(run_dir / "metrics.parquet")
        rows.append({"run_id": f"run-{i:04d}", "seed": 0, "status": "completed", "steps": 100 * (n - 1),
                     "memorized_step": run.get("memorized"), "generalized_step": run.get("generalized"),
                     "final": {"test_loss": run.get("final_test_loss", 0.0)}, "events": {}, "analysis": {},
                     "params": {"task.train_fraction": run.get("value", 0.5)}})  # fmt: skip
    return ExperimentResult(root=tmp_path, spec={"name": "x"}, meta={}, rows=rows)


def test_later_at_smaller_fractions(tmp_path: Path) -> None:
    curves = {0.6: [5, 0.5, 0.4, 0.3], 0.4: [5, 3, 0.9, 0.3], 0.3: [5, 4, 3, 2]}  # test_loss < 1 at 100, 200, never
    result = _result(tmp_path, [{"value": v, "curve": {"test_loss": c}} for v, c in curves.items()])
    later = CHECKS["later_at_smaller"].fn
    assert later(result, key="task.train_fraction", column="test_loss", level=1.0) == (
        "test_loss < 1 first by task.train_fraction: 0.3: never, 0.4: 200, 0.6: 100",
        True,
    )
    assert (
        later(result, key="task.train_fraction", column="test_loss", level=0.35)[1] is False
    )  # 0.4 and 0.6 tie at 300
    assert later(result, key="task.train_fraction", column="test_loss", level=0.1)[1] is None  # none gets there


def test_a_count_falls_by_generalization(tmp_path: Path) -> None:
    runs = [{"curve": {"large_neurons": [900, 800, 300, 40]}, "memorized": 100, "generalized": 300}]
    falls = CHECKS["falls_by_generalization"].fn
    assert falls(_result(tmp_path, runs), column="large_neurons", factor=0.5) == (
        "large_neurons 800 at memorization, 40 at generalization",
        True,
    )
    assert falls(_result(tmp_path / "b", runs), column="large_neurons", factor=0.01)[1] is False
    assert (
        falls(_result(tmp_path / "c", [{**runs[0], "generalized": None}]), column="large_neurons", factor=1)[1] is None
    )


def test_double_descent_over_size_and_over_steps(tmp_path: Path) -> None:
    sizes = [(0.1, 2.0), (0.2, 3.0), (0.3, 1.0), (0.4, 0.5)]
    runs = [{"value": v, "final_test_loss": loss, "curve": {"test_loss": [4, 1, 3, 0.5]}} for v, loss in sizes]
    result = _result(tmp_path, runs)
    peaks = CHECKS["peaks_inside"].fn
    assert peaks(result, key="task.train_fraction", column="final_test_loss") == (
        "final_test_loss by task.train_fraction: 0.1: 2, 0.2: 3, 0.3: 1, 0.4: 0.5; inner peak at 0.2",
        True,
    )
    monotone = _result(tmp_path / "m", [{**r, "final_test_loss": 4 - 4 * r["value"]} for r in runs])
    assert peaks(monotone, key="task.train_fraction", column="final_test_loss")[1] is False
    twice = CHECKS["descends_twice"].fn
    assert twice(result, column="test_loss", factor=2) == ("4 of 4 run(s) descend twice", True)  # 4, 1, 3, 0.5
    assert twice(result, column="test_loss", factor=4)[1] is False  # 3 is not 4x the low of 1
    rising = _result(tmp_path / "r", [{"curve": {"test_loss": [1, 3, 0.5, 0.4]}}])  # never fell before rising
    assert twice(rising, column="test_loss", factor=2)[1] is False


def test_never_generalizes_at_one_sweep_point(tmp_path: Path) -> None:
    runs = [
        {"value": v, "curve": {"test_loss": [1.0]}, "generalized": g} for v, g in ((0.3, None), (0.5, 900), (0.5, None))
    ]
    never = CHECKS["never_generalizes_at"].fn
    result = _result(tmp_path, runs)
    assert never(result, key="task.train_fraction", value=0.3) == (
        "generalized by task.train_fraction: 0.3: 0/1, 0.5: 1/2",
        True,
    )
    assert never(result, key="task.train_fraction", value=0.5)[1] is False
    assert never(result, key="task.train_fraction", value=0.7)[1] is None


def test_later_at_larger_and_moves_before(tmp_path: Path) -> None:
    curves = {0.1: [1.0, 0.2, 0.1], 1.0: [1.0, 0.8, 0.2], 10.0: [1.0, 1.0, 1.0]}  # < 0.5 at 100, 200, never
    change = {0.1: [0.0, 2.0, 3.0], 1.0: [0.0, 0.5, 1.5], 10.0: [0.0, 0.01, 0.02]}
    runs = [{"value": v, "curve": {"test_loss": c, "ntk_change": change[v]}} for v, c in curves.items()]
    result = _result(tmp_path, runs)
    later = CHECKS["later_at_smaller"].fn
    assert later(result, key="task.train_fraction", column="test_loss", level=0.5, toward="larger")[1] is True
    assert later(result, key="task.train_fraction", column="test_loss", level=0.5)[1] is False
    moves = CHECKS["moves_before"].fn
    assert moves(result, column="ntk_change", level=1.0, other="test_loss", other_level=0.5) == (
        "ntk_change >= 1 at step 150, test_loss < 0.5 at 150 (2 runs)",
        True,
    )
    assert moves(result, column="ntk_change", level=2.5, other="test_loss", other_level=0.5)[1] is False
