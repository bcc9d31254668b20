"""Events read off a finished run's curves: test-loss peak, grokking delay, slingshots, Nanda's and Liu's phases.

All work on the evaluated steps only, so their resolution is the evaluation schedule's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SPIKE_FACTOR = 10.0
"""A train-loss spike: the loss jumps above SPIKE_FACTOR x its lowest value so far."""
CYCLE_FRACTION = 0.1
"""A last-layer-norm cycle: a rise of at least 10% from a trough, then a fall of at least 10% from the peak."""
SLINGSHOT_RISE = 200
"""A slingshot's norm rise is read from the evaluation before its loss spike to this many steps after the onset."""
SLINGSHOT_PLATEAU = 1000
"""...and compared with the norm's growth over this many steps before the rise and after it (the plateaus)."""
SLINGSHOT_GROWTH = 2.0
"""A train-loss spike is a slingshot when the last-layer norm grows at least this many times faster across the
rise than on the plateau on either side of it (Thilak et al.: rapid norm growth, a loss spike, a norm plateau).
Measured on the token MLP without weight decay (Adam, eps 1e-8 and 1e-7, 2026-11-24): every one of its 14 loss
spikes rises 4.1-14.7 times faster than the slower plateau, while a norm growing at one rate has a ratio of 1."""
CLEANUP_END_FRACTION = 0.1
"""Cleanup has ended once log(test / restricted loss) is back below this fraction of its peak."""
LIU_ACCURACY = 0.9
"""Liu et al.'s phases: the steps at which train and test accuracy first reach 0.9 (threshold_train_acc,
threshold_test_acc of toy/train_add.py)."""
LIU_GAP = 1000
"""Liu et al.'s phases: generalizing more than this many steps after fitting is grokking, less is comprehension
(`threshold = 1e3` of the phase-diagram notebooks, phase_diagram_plot/ and toy/Figure5.ipynb)."""
LIU_RQI = 0.95
"""Liu et al.'s representation is reached when RQI exceeds 0.95 (threshold_rqi of toy/train_add.py, Fig. 4)."""


def run_events(history: dict[str, list[float]], memorized: int | None, generalized: int | None) -> dict[str, Any]:
    """Every event of one run from its metrics history (columns -> values at `history['step']`)."""
    steps = np.asarray(history["step"])
    events: dict[str, Any] = {
        "test_loss_peak_step": _peak_step(steps, history.get("test_loss")),
        "grokking_delay": generalized - memorized if memorized is not None and generalized is not None else None,
        "loss_spike_steps": loss_spikes(steps, np.asarray(history["train_loss"], dtype=float)),
    }
    events.update(liu_phase(steps, history["train_acc"], history["test_acc"]))
    if "liu_rqi" in history:
        above = np.flatnonzero(np.asarray(history["liu_rqi"], dtype=float) > LIU_RQI)
        events["rqi_step"] = int(steps[above[0]]) if len(above) else None
    if "last_layer_norm" in history:
        norm = np.asarray(history["last_layer_norm"], dtype=float)
        events["norm_cycle_peak_steps"] = norm_cycles(steps, norm)
        events["slingshot_steps"] = slingshots(steps, np.asarray(history["train_loss"], dtype=float), norm)
    if "corrupted_acc" in history:
        events["doshi_phase"] = doshi_phase(history)
    if "restricted_loss" in history and "excluded_loss" in history:
        events.update(
            nanda_phases(
                steps,
                np.asarray(history["test_loss"], dtype=float),
                np.asarray(history["restricted_loss"], dtype=float),
                np.asarray(history["excluded_loss"], dtype=float),
                memorized,
            )
        )
    return events


def _peak_step(steps: np.ndarray, values: list[float] | None) -> int | None:
    if not values:
        return None
    finite = np.where(np.isfinite(values), values, -np.inf)
    return int(steps[int(np.argmax(finite))])


def loss_spikes(steps: np.ndarray, loss: np.ndarray) -> list[int]:
    """Steps where the train loss jumps above SPIKE_FACTOR x its running minimum (the start of each spike).

    >>> loss_spikes(np.arange(6), np.array([1.0, 0.1, 0.01, 0.5, 0.01, 0.001]))
    [3]
    """
    spikes, lowest, inside = [], math.inf, False
    for step, value in zip(steps, loss):
        if not math.isfinite(value):
            continue
        above = value > SPIKE_FACTOR * lowest
        if above and not inside:
            spikes.append(int(step))
        inside = above
        lowest = min(lowest, value)
    return spikes


def norm_cycles(steps: np.ndarray, norm: np.ndarray) -> list[int]:
    """Steps of the peaks of last-layer-norm cycles (rise >= 10% from a trough, then fall >= 10%).

    >>> norm_cycles(np.arange(7), np.array([1.0, 1.5, 1.0, 1.02, 1.6, 1.1, 1.2]))
    [1, 4]
    """
    peaks, trough, peak, peak_step, rising = [], norm[0], norm[0], int(steps[0]), False
    for step, value in zip(steps[1:], norm[1:]):
        if not rising:
            trough = min(trough, value)
            if value >= trough * (1 + CYCLE_FRACTION):
                rising, peak, peak_step = True, value, int(step)
        else:
            if value > peak:
                peak, peak_step = value, int(step)
            elif value <= peak * (1 - CYCLE_FRACTION):
                peaks.append(peak_step)
                rising, trough = False, value
    return peaks


def slingshots(steps: np.ndarray, loss: np.ndarray, norm: np.ndarray) -> list[int]:
    """Onsets of Thilak et al.'s slingshots: train-loss spikes (`loss_spikes`) across which the last-layer norm
    rises at least SLINGSHOT_GROWTH times faster than on the plateau before the spike or the one after it.

    Rates are norm increments per step, the norm read at any step by linear interpolation between evaluations:
    the rise from the evaluation before the onset to SLINGSHOT_RISE steps after it, the plateaus over
    SLINGSHOT_PLATEAU steps on each side (cut at the run's ends). "Either side" because the first slingshot
    follows the norm's early, fast growth and stands out only against the plateau after it. Needs evaluations
    every ~100 steps or less: a spike between two evaluations is not seen.

    >>> steps = np.arange(0, 5001, 50)
    >>> loss = np.where(steps == 2500, 1e-3, 1e-8)
    >>> slingshots(steps, loss, 10 + np.where(steps >= 2500, 1.0, 0.0) + 1e-4 * steps)  # a jump in the norm
    [2500]
    >>> slingshots(steps, loss, 10 + 1e-4 * steps)  # the same spike with the norm growing at one rate
    []
    """
    finite = np.isfinite(loss) & np.isfinite(norm)
    steps, loss, norm = steps[finite], loss[finite], norm[finite]

    def rate(start: float, end: float) -> float | None:
        """Norm growth per step over [start, end] cut to the run, None when nothing of it is left."""
        start, end = max(start, float(steps[0])), min(end, float(steps[-1]))
        return (
            float(np.interp(end, steps, norm) - np.interp(start, steps, norm)) / (end - start) if end > start else None
        )

    out = []
    for onset in loss_spikes(steps, loss):
        before = float(steps[steps < onset][-1])  # a spike's onset is never the first evaluation
        rise, end = rate(before, onset + SLINGSHOT_RISE), onset + SLINGSHOT_RISE
        plateaus = [
            p for p in (rate(before - SLINGSHOT_PLATEAU, before), rate(end, end + SLINGSHOT_PLATEAU)) if p is not None
        ]
        if rise is not None and rise > 0 and any(rise >= SLINGSHOT_GROWTH * max(p, 0.0) for p in plateaus):
            out.append(int(onset))
    return out


def nanda_phases(
    steps: np.ndarray,
    test_loss: np.ndarray,
    restricted: np.ndarray,
    excluded: np.ndarray,
    memorized: int | None,
) -> dict[str, int | None]:
    """Boundaries of Nanda et al.'s three phases, estimated from the restricted and excluded losses.

    circuit_formation_step: the step, at or after memorization, of the excluded loss's minimum: from
        there on the key frequencies carry more and more of the training fit, so removing them hurts;
    cleanup_step: the step after that where log(test loss / restricted loss) peaks (the circuit alone
        is good while memorization still hurts the test set; cleanup then closes that gap);
    cleanup_end_step: first step after that where the gap is below CLEANUP_END_FRACTION of its peak.
    These are heuristics; the paper draws its boundaries by eye (nanda-modadd, seed 0, here: 1,400 and
    9,500 against the paper's ~1.4k and ~9.4k).
    """
    out: dict[str, int | None] = {"circuit_formation_step": None, "cleanup_step": None, "cleanup_end_step": None}
    if memorized is None:
        return out
    after = np.flatnonzero((steps >= memorized) & np.isfinite(excluded))
    if not len(after):
        return out
    start = int(after[np.argmin(excluded[after])])
    out["circuit_formation_step"] = int(steps[start])
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.log(test_loss[start:] / restricted[start:])
    gap = np.where(np.isfinite(gap), gap, -np.inf)
    peak = int(np.argmax(gap))
    if gap[peak] <= 0:
        return out
    out["cleanup_step"] = int(steps[start + peak])
    closed = np.flatnonzero(gap[peak:] <= CLEANUP_END_FRACTION * gap[peak])
    if len(closed):
        out["cleanup_end_step"] = int(steps[start + peak + closed[0]])
    return out


def liu_phase(steps: np.ndarray, train_acc: list[float], test_acc: list[float]) -> dict[str, Any]:
    """Liu et al.'s learning phase of a run, from the first steps its train and test accuracy reach 0.9
    (fit_step, generalize_step; None if never within the run's budget), as the phase-diagram code labels them:

    comprehension: both reached, and test within LIU_GAP steps of train; grokking: both reached, test later;
    memorization: train reached, test never; confusion: neither. Test without train, which the code leaves
    unlabelled, stays None.

    >>> liu_phase(np.array([0, 500, 5000]), [0.1, 0.95, 1.0], [0.0, 0.2, 0.93])["liu_phase"]
    'grokking'
    >>> liu_phase(np.array([0, 500, 5000]), [0.1, 0.5, 0.8], [0.0, 0.2, 0.3])["liu_phase"]
    'confusion'
    """
    out: dict[str, Any] = {}
    for name, values in (("fit_step", train_acc), ("generalize_step", test_acc)):
        # Accuracies are stored in the run's dtype: 9/10 in float32 is 0.89999998, and it counts as 0.9.
        hits = np.flatnonzero(np.asarray(values, dtype=float) >= LIU_ACCURACY - 1e-6)
        out[name] = int(steps[hits[0]]) if len(hits) else None
    fit, generalize = out["fit_step"], out["generalize_step"]
    if fit is None:
        out["liu_phase"] = "confusion" if generalize is None else None
    elif generalize is None:
        out["liu_phase"] = "memorization"
    else:
        out["liu_phase"] = "comprehension" if generalize - fit < LIU_GAP else "grokking"
    return out


PHASE_HIGH = 0.9
"""Doshi phases: an accuracy counts as high at >= 0.9, as low below 0.5 (between: partial)."""


def doshi_phase(history: dict[str, list[float]]) -> str | None:
    """Doshi et al.'s phase of a run with corrupted labels, from its last measured accuracies.

    memorization: fits the corrupted labels, does not generalize (test < 0.9);
    coexistence: generalizes (test >= 0.9) and still fits the corrupted labels as given (>= 0.9);
    full inversion: generalizes and predicts the *true* label of >= 90% of the corrupted examples;
    partial inversion: generalizes, in between;
    forgetting: fits neither the clean training examples nor the test set (both < 0.5);
    None when the run has no corrupted examples or no measured accuracies.

    >>> doshi_phase({"test_acc": [1.0], "corrupted_acc": [0.02], "corrupted_true_acc": [0.97], "clean_acc": [1.0]})
    'full inversion'
    """
    last = {}
    for name in ("test_acc", "clean_acc", "corrupted_acc", "corrupted_true_acc"):
        values = [v for v in history.get(name, []) if v == v]  # measured (not NaN) evaluations
        if not values:
            return None
        last[name] = values[-1]
    if last["test_acc"] < 0.5 and last["clean_acc"] < 0.5:
        return "forgetting"
    if last["test_acc"] < PHASE_HIGH:
        return "memorization"
    if last["corrupted_acc"] >= PHASE_HIGH:
        return "coexistence"
    if last["corrupted_true_acc"] >= PHASE_HIGH:
        return "full inversion"
    return "partial inversion"
