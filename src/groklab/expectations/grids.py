"""Claims about how a curve changes over a swept grid or over training: later at smaller training sets (Power et
al., Nanda et al.), a count that drops by generalization (Merrill et al.), and double descent over model size
and over steps (Davies et al. 2023)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from groklab.expectations.base import Outcome, check, median
from groklab.store.reader import ExperimentResult


def _first_below(frame: pd.DataFrame, column: str, level: float) -> float:
    below = frame.loc[frame[column] < level, "step"] if column in frame else pd.Series(dtype=float)
    return float(below.iloc[0]) if len(below) else np.inf


def _median_or_never(values: pd.Series) -> float:
    median = float(values.median())
    return median if np.isfinite(median) else np.inf


def _ever_later(by_value: pd.Series, toward: str) -> bool:
    """Whether the steps (by ascending swept value, never = inf) are strictly later at each value further `toward`
    ("smaller" or "larger"), two nevers counting as equal."""
    ordered = by_value.values if toward == "smaller" else by_value.values[::-1]
    return all(a > b or a == b == np.inf for a, b in zip(ordered[:-1], ordered[1:]))


@check("later_at_smaller", "median first step with {column} < {level:g} later at every {toward} {key}")
def later_at_smaller(result: ExperimentResult, key: str, column: str, level: float, toward: str = "smaller") -> Outcome:
    """A curve reaches a level later and later as a swept key (e.g. the training fraction) falls (toward
    "smaller"; "larger": as it grows, e.g. an output scale): strictly later at each value further that way, a
    run that never gets there counting as infinitely late."""
    runs = result.runs.set_index("run_id")
    if key not in runs:
        return f"no sweep over {key}", None
    steps = pd.Series({run_id: _first_below(f, column, level) for run_id, f in result.metrics.groupby("run_id")})
    by_value = steps.groupby(runs[key].reindex(steps.index)).apply(_median_or_never).sort_index()
    shown = ", ".join(f"{v:g}: {'never' if s == np.inf else f'{s:,.0f}'}" for v, s in by_value.items())
    if by_value.size < 2 or not np.isfinite(by_value).any():
        return f"{column} < {level:g} by {key}: {shown}", None
    return f"{column} < {level:g} first by {key}: {shown}", _ever_later(by_value, toward)


@check("later_toward", "median {column} later at every {toward} {key}, a run that never got there the latest")
def later_toward(
    result: ExperimentResult, key: str, column: str = "generalized_step", toward: str = "smaller"
) -> Outcome:
    """A per-run step (e.g. generalized_step) comes later and later as a swept key moves one way (toward "smaller"
    or "larger" values, e.g. a training set shrinking toward a critical size): strictly later at each value further
    that way, runs that never got there counting as infinitely late (two values where the median run never got
    there are equal, not a failure)."""
    runs = result.runs
    if key not in runs or column not in runs:
        return f"no sweep over {key} with {column}", None
    steps = pd.to_numeric(runs[column], errors="coerce").astype(float).fillna(np.inf)
    by_value = steps.groupby(runs[key]).apply(_median_or_never).sort_index()
    shown = ", ".join(f"{v:g}: {'never' if s == np.inf else f'{s:,.0f}'}" for v, s in by_value.items())
    if by_value.size < 2 or not np.isfinite(by_value).any():
        return f"median {column} by {key}: {shown}", None
    return f"median {column} by {key}: {shown}", _ever_later(by_value, toward)


@check("falls_by_generalization", "median {column} at generalization <= x{factor:g} its value at memorization")
def falls_by_generalization(result: ExperimentResult, column: str, factor: float) -> Outcome:
    """A measure (e.g. the count of large-norm neurons) has dropped by the time the run generalizes: its value at
    the first evaluation at or after generalized_step against the one at memorized_step, median over runs."""
    runs, metrics = result.runs.set_index("run_id"), result.metrics
    if column not in metrics or median(result, "generalized_step") is None:
        return f"no {column} stored or no run generalized", None
    pairs = []
    for run_id, frame in metrics.dropna(subset=[column]).groupby("run_id"):
        memorized, generalized = runs.loc[run_id, "memorized_step"], runs.loc[run_id, "generalized_step"]
        if pd.isna(memorized) or pd.isna(generalized):
            continue
        at = [frame.loc[frame["step"] >= s, column] for s in (memorized, generalized)]
        if len(at[0]) and len(at[1]):
            pairs.append((float(at[0].iloc[0]), float(at[1].iloc[0])))
    if not pairs:
        return "no run both memorized and generalized", None
    start, end = (float(np.median(values)) for values in zip(*pairs))
    return f"{column} {start:.4g} at memorization, {end:.4g} at generalization", bool(end <= factor * start)


@check("peaks_inside", "median final {column} over {key} rises above both neighbours at an inner value")
def peaks_inside(result: ExperimentResult, key: str, column: str) -> Outcome:
    """Double descent over a swept size: the final value of a runs column (e.g. final_test_loss) is not monotone
    but peaks at some inner value of the grid, above the values on both sides of it."""
    runs = result.runs
    if key not in runs or column not in runs:
        return f"no sweep over {key} with {column}", None
    values = pd.to_numeric(runs[column], errors="coerce").groupby(runs[key]).median().sort_index()
    shown = ", ".join(f"{k:g}: {v:.3g}" for k, v in values.items())
    if values.size < 3:
        return f"{column} by {key}: {shown} (a peak needs three values)", None
    inner = [
        k for i, k in enumerate(values.index[1:-1], 1) if values.iloc[i] > max(values.iloc[i - 1], values.iloc[i + 1])
    ]
    where = ", ".join(f"{k:g}" for k in inner) or "none"
    return f"{column} by {key}: {shown}; inner peak at {where}", bool(inner)


@check("descends_twice", "{column} falls, rises x{factor:g} above its low, then falls below that peak / {factor:g}")
def descends_twice(result: ExperimentResult, column: str, factor: float) -> Outcome:
    """Double descent over training (epoch-wise): in the median run a curve (e.g. test_loss) falls to a low,
    rises `factor` times above it, and later falls to below the peak divided by `factor`."""
    metrics = result.metrics
    if column not in metrics:
        return f"no {column} stored", None
    hits = []
    for _, frame in metrics.dropna(subset=[column]).groupby("run_id"):
        curve, found = frame.sort_values("step")[column].to_numpy(), False
        low = np.minimum.accumulate(curve)
        for i in range(1, len(curve)):
            fell, rose = low[i - 1] < curve[0], curve[i] >= factor * low[i - 1]
            if fell and rose and curve[i + 1 :].size and curve[i + 1 :].min() <= curve[i] / factor:
                found = True
                break
        hits.append(found)
    if not hits:
        return f"no {column} stored", None
    return f"{sum(hits)} of {len(hits)} run(s) descend twice", bool(np.mean(hits) > 0.5)


@check("never_generalizes_at", "no run at {key} = {value} generalizes; where the others do, listed")
def never_generalizes_at(result: ExperimentResult, key: str, value: str | float) -> Outcome:
    """One sweep point (e.g. Power et al.'s x3+xy2+y) never generalizes in the budget, while the others are listed
    with the share of their runs that did."""
    runs = result.runs
    if key not in runs:
        return f"no sweep over {key}", None
    done = runs["generalized_step"].notna().groupby(runs[key]).agg(["sum", "size"])
    listed = ", ".join(f"{k}: {int(row['sum'])}/{int(row['size'])}" for k, row in done.iterrows())
    mine = done.loc[[k for k in done.index if str(k) == str(value)]]
    if mine.empty:
        return f"no run at {key} = {value}", None
    return f"generalized by {key}: {listed}", bool(int(mine["sum"].iloc[0]) == 0)


@check("moves_before", "median first step with {column} >= {level:g} <= the first with {other} < {other_level:g}")
def moves_before(result: ExperimentResult, column: str, level: float, other: str, other_level: float) -> Outcome:
    """One curve rises to a level (e.g. the kernel's change from init) no later than another falls to its level
    (e.g. the test loss), in the median run of those where the second happens."""
    metrics = result.metrics
    if column not in metrics or other not in metrics:
        return f"no {column} or {other} stored", None
    pairs = []
    for _, frame in metrics.groupby("run_id"):
        falls = _first_below(frame, other, other_level)
        if np.isfinite(falls):
            rises = frame.loc[frame[column] >= level, "step"]
            pairs.append((float(rises.iloc[0]) if len(rises) else np.inf, falls))
    if not pairs:
        return f"no run's {other} fell below {other_level:g}", None
    first, second = (float(np.median(values)) for values in zip(*pairs))
    shown = (
        f"{column} >= {level:g} at step {first:,.0f}, {other} < {other_level:g} at {second:,.0f} ({len(pairs)} runs)"
    )
    return shown, bool(first <= second)
