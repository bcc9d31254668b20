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
