"""Milestone rules against hand-written evaluations."""

from __future__ import annotations

import math

from groklab.engine.milestones import Milestones


def test_thresholds_are_99_percent_at_evaluated_steps() -> None:
    milestones = Milestones(steps=100, stop_after_generalized=None)
    assert milestones.observe(0, 4.0, 0.50, 4.0, 0.01) == []
    assert milestones.observe(10, 0.1, 0.985, 4.0, 0.02) == []  # 98.5% is not memorized
    assert milestones.observe(20, 0.01, 0.99, 3.0, 0.95) == ["memorized"]
    assert milestones.observe(30, 0.01, 1.0, 0.5, 0.99) == ["generalized"]
    assert milestones.observe(40, 0.01, 0.97, 0.5, 0.98) == []  # events are first crossings; they stay
    assert (milestones.memorized_step, milestones.generalized_step, milestones.status) == (20, 30, None)
    milestones.observe(100, 0.01, 1.0, 0.1, 1.0)
    assert milestones.status == "completed"


def test_stop_after_generalized_and_divergence() -> None:
    milestones = Milestones(steps=1000, stop_after_generalized=50)
    assert milestones.observe(10, 0.1, 1.0, 0.1, 1.0) == ["memorized", "generalized"]
    milestones.observe(50, 0.1, 1.0, 0.1, 1.0)
    assert milestones.status is None
    milestones.observe(60, 0.1, 1.0, 0.1, 1.0)
    assert milestones.status == "stopped"
    diverging = Milestones(steps=1000, stop_after_generalized=None)
    assert diverging.observe(5, math.nan, 0.0, 1.0, 0.0) == ["diverged"]
    assert diverging.status == "diverged"
    assert Milestones(10, None).observe(5, 1.0, 0.0, math.inf, 0.0) == ["diverged"]


def test_stop_when_settled_waits_for_a_whole_quiet_window_after_generalizing() -> None:
    milestones = Milestones(steps=10_000, stop_after_generalized=None, stop_when_settled=100, settle_tolerance=0.01)
    milestones.observe(0, 1.0, 0.95, 1.0, 0.10)
    for step in range(10, 300, 10):  # a flat grokking plateau before generalizing never counts as settled
        milestones.observe(step, 0.1, 0.95, 1.0, 0.10)
    assert milestones.status is None
    milestones.observe(300, 0.1, 0.95, 0.1, 1.0)  # generalized at 300
    train = {310: 0.90, 320: 0.91, 330: 0.92, 340: 0.93, 350: 0.94, 360: 0.95, 370: 0.955}
    for step, acc in train.items():  # still drifting: 0.90 -> 0.955
        milestones.observe(step, 0.1, acc, 0.1, 1.0)
    assert milestones.status is None
    for step in range(380, 480, 10):  # 0.966..0.970 from 380 on: the window reaches back to 370 (0.955) until step 480
        milestones.observe(step, 0.1, 0.966 + 0.004 * (step % 20 == 0), 0.1, 1.0)
        assert milestones.status is None, step
    milestones.observe(480, 0.1, 0.966, 0.1, 1.0)  # the window [380, 480] holds 0.966..0.970: settled
    assert milestones.status == "stopped"
