"""Claims of Omnigrok (Liu, Michaud, Tegmark 2023): the weight norm at initialization controls grokking.

At a large initialization scale alpha a network fits its training set at once, far from the norm where the
generalizing solutions lie; test accuracy rises only as weight decay brings the norm down into that
"Goldilocks zone". At alpha ~ 1 the network starts near it, and train and test accuracy rise together.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from groklab.expectations.base import Outcome, check
from groklab.store.reader import ExperimentResult


def first_reached(result: ExperimentResult, column: str, level: float, read: str | None = None) -> pd.DataFrame:
    """Per run: the first evaluated step where `column` >= level (NaN: never) and, with `read`, the value of
    that metrics column then and at the first evaluation; indexed by run_id."""
    rows = {}
    for run_id, frame in result.metrics.groupby("run_id"):
        frame = frame.sort_values("step")
        hits = frame[frame[column] >= level] if column in frame else frame.iloc[:0]
        row = {"step": float(hits["step"].iloc[0]) if len(hits) else np.nan}
        if read is not None and read in frame:
            row["at_level"] = float(hits[read].iloc[0]) if len(hits) else np.nan
            row["at_start"] = float(frame[read].iloc[0])
        rows[run_id] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _median(values: pd.Series) -> float:
    """Median over runs, a run that never got there counting as infinitely late (NaN when most never did)."""
    median = float(values.fillna(np.inf).median())
    return median if np.isfinite(median) else np.nan


def _lag(result: ExperimentResult, key: str, value: float, train_level: float, test_level: float) -> tuple:
    """Median steps to the train and test levels over the runs at key = value, and what a reader is shown."""
    runs = result.runs.set_index("run_id")
    if key not in runs:
        return None, None, f"no sweep over {key}"
    ids = runs.index[np.isclose(pd.to_numeric(runs[key], errors="coerce"), value)]
    if ids.empty:
        return None, None, f"no run at {key} = {value:g}"
    train = _median(first_reached(result, "train_acc", train_level)["step"].loc[ids])
    test = _median(first_reached(result, "test_acc", test_level)["step"].loc[ids])
    shown = {name: "never" if s != s else f"{s:,.0f}" for name, s in (("train", train), ("test", test))}
    return train, test, f"at {key} = {value:g}: train at step {shown['train']}, test at step {shown['test']}"


@check(
    "test_lags_train",
    "at {key} = {value:g}, test_acc >= {test_level:g} first at >= {factor:g}x the step of train_acc >= {train_level:g}",
)
def test_lags_train(
    result: ExperimentResult, key: str, value: float, factor: float, train_level: float = 0.99, test_level: float = 0.9
) -> Outcome:
    """Grokking at one sweep point: the median run fits its training set early and reaches the test level
    `factor` times later (not met when test accuracy never gets there: that is not generalizing late)."""
    train, test, shown = _lag(result, key, value, train_level, test_level)
    if train is None or train != train or test != test:
        return shown, None if train is None else False
    return f"{shown} ({test / max(train, 1):.1f}x)", bool(test >= factor * max(train, 1))


@check(
    "test_keeps_up",
    "at {key} = {value:g}, test_acc >= {test_level:g} first within {factor:g}x the step of train_acc >= "
    "{train_level:g}",
)
def test_keeps_up(
    result: ExperimentResult, key: str, value: float, factor: float, train_level: float = 0.99, test_level: float = 0.9
) -> Outcome:
    """No grokking at one sweep point: test accuracy reaches its level no later than `factor` times the step
    train accuracy reaches its own (both rise together)."""
    train, test, shown = _lag(result, key, value, train_level, test_level)
    if train is None or train != train or test != test:
        return shown, None if train is None else False
    return f"{shown} ({test / max(train, 1):.1f}x)", bool(test <= factor * max(train, 1))


@check(
    "norm_falls_to_generalize",
    "at {key} = {value:g}, weight_norm falls from when train_acc >= {train_level:g} to when test_acc >= "
    "{test_level:g}, toward the norm where the smallest {key} reaches test_acc >= {test_level:g}",
)
def norm_falls_to_generalize(
    result: ExperimentResult, key: str, value: float, train_level: float = 0.99, test_level: float = 0.9
) -> Outcome:
    """Omnigrok's Goldilocks zone, at one (large) sweep point: between memorizing and generalizing the median
    run's weight norm falls, and ends nearer (in ratio) the norm at which the runs at the smallest value, which
    start near the zone, generalize."""
    runs = result.runs.set_index("run_id")
    if key not in runs or "weight_norm" not in result.metrics:
        return f"no sweep over {key} with weight_norm", None
    values = pd.to_numeric(runs[key], errors="coerce")
    mine, smallest = runs.index[np.isclose(values, value)], runs.index[values == values.min()]
    if mine.empty:
        return f"no run at {key} = {value:g}", None
    memorized = first_reached(result, "train_acc", train_level, read="weight_norm")
    generalized = first_reached(result, "test_acc", test_level, read="weight_norm")
    at_memorized = float(memorized.loc[mine, "at_level"].median())
    at_generalized = float(generalized.loc[mine, "at_level"].median())
    reference = float(generalized.loc[smallest, "at_level"].median())
    if reference != reference:
        return f"the runs at {key} = {values.min():g} never reach test_acc {test_level:g}", None
    shown = f"at {key} = {value:g}: weight norm {generalized.loc[mine, 'at_start'].median():.3g} at init, " + (
        f"{at_memorized:.3g} at train_acc {train_level:g}, " if at_memorized == at_memorized else "never memorized, "
    )
    if at_generalized != at_generalized or at_memorized != at_memorized:
        return shown + f"never at test_acc {test_level:g} (the smallest {key}: {reference:.3g})", False
    shown += f"{at_generalized:.3g} at test_acc {test_level:g}; the smallest {key} generalizes at {reference:.3g}"
    nearer = abs(np.log(at_generalized / reference)) < abs(np.log(at_memorized / reference))
    return shown, bool(at_generalized < at_memorized and nearer)
