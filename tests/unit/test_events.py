"""Event rules against hand-written evaluations."""

from __future__ import annotations

import math

from groklab.engine.events import RunEvents


def test_thresholds_are_99_percent_at_evaluated_steps() -> None:
    events = RunEvents(steps=100, stop_after_generalized=None)
    assert events.observe(0, 4.0, 0.50, 4.0, 0.01) == []
    assert events.observe(10, 0.1, 0.985, 4.0, 0.02) == []  # 98.5% is not memorized
    assert events.observe(20, 0.01, 0.99, 3.0, 0.95) == ["memorized"]
    assert events.observe(30, 0.01, 1.0, 0.5, 0.99) == ["generalized"]
    assert events.observe(40, 0.01, 0.97, 0.5, 0.98) == []  # events are first crossings; they stay
    assert (events.memorized_step, events.generalized_step, events.status) == (20, 30, None)
    events.observe(100, 0.01, 1.0, 0.1, 1.0)
    assert events.status == "completed"


def test_stop_after_generalized_and_divergence() -> None:
    events = RunEvents(steps=1000, stop_after_generalized=50)
    assert events.observe(10, 0.1, 1.0, 0.1, 1.0) == ["memorized", "generalized"]
    events.observe(50, 0.1, 1.0, 0.1, 1.0)
    assert events.status is None
    events.observe(60, 0.1, 1.0, 0.1, 1.0)
    assert events.status == "stopped"
    diverging = RunEvents(steps=1000, stop_after_generalized=None)
    assert diverging.observe(5, math.nan, 0.0, 1.0, 0.0) == ["diverged"]
    assert diverging.status == "diverged"
    assert RunEvents(10, None).observe(5, 1.0, 0.0, math.inf, 0.0) == ["diverged"]


def test_stop_when_settled_waits_for_a_whole_quiet_window_after_generalizing() -> None:
    events = RunEvents(steps=10_000, stop_after_generalized=None, stop_when_settled=100, settle_tolerance=0.01)
    events.observe(0, 1.0, 0.95, 1.0, 0.10)
    for step in range(10, 300, 10):  # a flat grokking plateau before generalizing never counts as settled
        events.observe(step, 0.1, 0.95, 1.0, 0.10)
    assert events.status is None
    events.observe(300, 0.1, 0.95, 0.1, 1.0)  # generalized at 300
    train = {310: 0.90, 320: 0.91, 330: 0.92, 340: 0.93, 350: 0.94, 360: 0.95, 370: 0.955}
    for step, acc in train.items():  # still drifting: 0.90 -> 0.955
        events.observe(step, 0.1, acc, 0.1, 1.0)
    assert events.status is None
    for step in range(380, 480, 10):  # 0.966..0.970 from 380 on: the window reaches back to 370 (0.955) until step 480
        events.observe(step, 0.1, 0.966 + 0.004 * (step % 20 == 0), 0.1, 1.0)
        assert events.status is None, step
    events.observe(480, 0.1, 0.966, 0.1, 1.0)  # the window [380, 480] holds 0.966..0.970: settled
    assert events.status == "stopped"
