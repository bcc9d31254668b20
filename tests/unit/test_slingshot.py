"""Thilak et al.'s slingshots: the detector on hand-made curves (each case also shown not to fire where the norm
grows at one rate), the claims' checks on hand-made results, and the figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from groklab.expectations import CHECKS
from groklab.figures import slingshot
from groklab.measures.curve_events import run_events, slingshots
from groklab.store.reader import ExperimentResult

STEPS = np.arange(0, 10_001, 50)


def _spiky_loss(onsets: list[int]) -> np.ndarray:
    """A train loss at 1e-8 that jumps to 1e-3 at each onset and decays back over ~150 steps."""
    loss = np.full(len(STEPS), 1e-8)
    for onset in onsets:
        after = (STEPS >= onset) & (STEPS < onset + 150)
        loss[after] = 1e-3 * 0.1 ** ((STEPS[after] - onset) / 50)
    return loss


def _staircase(onsets: list[int], jump: float = 0.3, slope: float = 2e-5) -> np.ndarray:
    """A norm that grows slowly and jumps by `jump` over the 100 steps after each onset."""
    norm = 40.0 + slope * STEPS
    for onset in onsets:
        norm += jump * np.clip((STEPS - onset) / 100, 0, 1)
    return norm


def test_a_slingshot_is_a_loss_spike_with_a_norm_jump() -> None:
    onsets = [3000, 5000, 7500]
    loss = _spiky_loss(onsets)
    assert slingshots(STEPS, loss, _staircase(onsets)) == onsets
    # The same spikes over a norm that grows at one rate are loss spikes, not slingshots.
    assert slingshots(STEPS, loss, 40.0 + 1e-3 * STEPS) == []
    # A norm jump without a loss spike is not one either.
    assert slingshots(STEPS, np.full(len(STEPS), 1e-8), _staircase(onsets)) == []


def test_the_first_slingshot_stands_out_against_the_plateau_after_it() -> None:
    """The first slingshot ends the norm's early growth: as fast as before it, much faster than after it."""
    norm = 40.0 + np.minimum(STEPS, 3100) * 2e-3 + 2e-5 * STEPS  # fast growth until 3,100, then a plateau
    assert slingshots(STEPS, _spiky_loss([3000]), norm) == [3000]
    linear = 40.0 + 2e-3 * STEPS  # the same early rate that never stops: no plateau on either side
    assert slingshots(STEPS, _spiky_loss([3000]), linear) == []


def test_a_spike_at_the_last_evaluation_needs_the_plateau_before_it() -> None:
    loss = _spiky_loss([10_000])
    assert slingshots(STEPS, loss, 40.0 + 1e-3 * STEPS) == []  # nothing after it, the same rate before
    assert slingshots(STEPS, loss, _staircase([9950])) == [10_000]


def test_run_events_report_slingshots_with_the_last_layer_norm() -> None:
    history = {"step": list(STEPS), "train_loss": list(_spiky_loss([4000])), "train_acc": [1.0] * len(STEPS),
               "test_acc": [0.5] * len(STEPS), "last_layer_norm": list(_staircase([4000]))}  # fmt: skip
    events = run_events(history, memorized=100, generalized=None)
    assert events["loss_spike_steps"] == [4000] and events["slingshot_steps"] == [4000]
    del history["last_layer_norm"]
    assert "slingshot_steps" not in run_events(history, memorized=100, generalized=None)


def _result(runs: list[tuple[float, list[int], int | None]], steps: list[int] | None = None) -> ExperimentResult:
    """Runs (eps, slingshot onsets, generalized step)."""
    return ExperimentResult(
        root=Path("."),
        spec={"name": "x", "sweep": {"optimizer.eps": sorted({r[0] for r in runs})}},
        meta={},
        rows=[
            {
                "run_id": f"run-{i:04d}",
                "seed": 0,
                "status": "completed",
                "steps": 10_000,
                "memorized_step": 500,
                "generalized_step": generalized,
                "final": {"test_acc": 1.0 if generalized else 0.6},
                "events": {"slingshot_steps": onsets},
                "analysis": {},
                "params": {"optimizer.eps": eps},
            }
            for i, (eps, onsets, generalized) in enumerate(runs)
        ],  # fmt: skip
    )


def test_generalization_at_a_slingshot_onset() -> None:
    check = CHECKS["generalizes_at_slingshot"].fn
    at_onsets = _result([(1e-8, [3000, 6000], 6200), (1e-7, [4000], 4100), (1e-3, [], None)])
    measured, met = check(at_onsets, within=500)
    assert met is True and measured == (
        "2 of 2 generalized run(s); steps after the last onset: 200, 100; onsets 3,000 steps apart (median)"
    )
    late = _result([(1e-8, [3000, 6000], 7000), (1e-7, [4000], 4100)])
    assert check(late, within=500) == (
        "1 of 2 generalized run(s); steps after the last onset: 1,000, 100; onsets 3,000 steps apart (median)",
        False,
    )
    without = _result([(1e-8, [], 3000), (1e-7, [5000], 4000)])  # no onset at or before generalization
    assert check(without, within=500)[1] is False
    assert check(_result([(1e-8, [3000], None)]), within=500)[1] is None  # nothing generalized: nothing to check


def test_slingshots_vanish_as_eps_grows() -> None:
    check = CHECKS["slingshots_vanish"].fn
    vanish = _result([(1e-8, [1, 2, 3], None), (1e-6, [1], None), (1e-4, [], None), (1e-3, [], None)])
    measured, met = check(vanish, key="optimizer.eps")
    assert met is True and measured == "median slingshots at optimizer.eps = 1e-08: 3, 1e-06: 1, 0.0001: 0, 0.001: 0"
    assert check(_result([(1e-8, [1], None), (1e-6, [1, 2], None), (1e-3, [], None)]), key="optimizer.eps")[1] is False
    assert check(_result([(1e-8, [1, 2], None), (1e-3, [1], None)]), key="optimizer.eps")[1] is False  # never 0
    assert check(_result([(1e-8, [], None), (1e-3, [], None)]), key="optimizer.eps")[1] is False  # none at all
    assert check(vanish, key="optimizer.lr")[1] is None


def test_runs_without_slingshots_end_less_general() -> None:
    check = CHECKS["generalize_with_slingshots"].fn
    grid = [(1e-8, [3000, 6000], None), (1e-7, [4000], 4100), (1e-5, [], None), (1e-3, [], None)]
    measured, met = check(_result(grid))  # final test accuracy 0.6 without generalizing, 1.0 with
    assert met is False and measured == (
        "final_test_acc 0.600-1.000 in the 2 run(s) with slingshots, 0.600-0.600 in the 2 without"
    )
    grid[0] = (1e-8, [3000, 6000], 8000)
    assert check(_result(grid))[1] is True
    assert check(_result([(1e-8, [1], 10), (1e-3, [2], None)]))[1] is None  # every run has slingshots


@pytest.mark.parametrize("name", ["slingshots", "slingshot_count"])
def test_figures_draw_from_a_stored_experiment(name: str, tmp_path: Path) -> None:
    runs = [(1e-8, [3000, 6000], 6200), (1e-3, [], None)]
    result = _result(runs)
    run_dir = tmp_path / "runs"
    result.root = tmp_path
    for i, (_, onsets, _) in enumerate(runs):
        (run_dir / f"run-{i:04d}").mkdir(parents=True)
        pd.DataFrame({"step": STEPS, "train_loss": _spiky_loss(onsets), "test_acc": 0.5, "train_acc": 1.0,
                      "last_layer_norm": _staircase(onsets)}).to_parquet(run_dir / f"run-{i:04d}" / "metrics.parquet")  # fmt: skip
    fig = getattr(slingshot, name)(result)
    assert len(fig.axes) == (3 if name == "slingshots" else 2)
    if name == "slingshots":  # the onsets are drawn where they are, on each panel
        dots = fig.axes[0].collections[0].get_offsets()
        assert [int(x) for x, _ in dots] == [3000, 6000]
