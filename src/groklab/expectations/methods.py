"""Claims of the methods that control grokking, compared variant by variant (a spec's `variants`): how soon each
reaches a level, e.g. Grokfast's iterations to 95% validation accuracy against its baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from groklab.expectations.base import Outcome, check
from groklab.store.reader import ExperimentResult


def steps_to_level(result: ExperimentResult, column: str, level: float) -> pd.DataFrame:
    """Per run: its variant and the first evaluated step where `column` >= level (NaN: never in its budget)."""
    metrics, runs = result.metrics, result.runs.set_index("run_id")
    rows = []
    for run_id, frame in metrics.groupby("run_id"):
        hits = frame.loc[frame[column] >= level, "step"] if column in frame else pd.Series(dtype=float)
        variant = runs.loc[run_id, "variant"] if "variant" in runs else ""
        rows.append({"run_id": run_id, "variant": variant, "step": float(hits.iloc[0]) if len(hits) else np.nan})
    return pd.DataFrame(rows, columns=["run_id", "variant", "step"])


def _median_step(steps: pd.Series) -> float:
    """Median over runs, a run that never got there counting as infinitely late (NaN when most never did)."""
    median = float(steps.fillna(np.inf).median())
    return median if np.isfinite(median) else np.nan


def _listing(frame: pd.DataFrame) -> str:
    parts = []
    for variant, group in frame.groupby("variant", sort=False):
        median, reached = _median_step(group["step"]), int(group["step"].notna().sum())
        shown = "never" if median != median else f"{median:,.0f}"
        parts.append(f"{variant or 'all'}: {shown} ({reached}/{len(group)})")
    return ", ".join(parts)


@check("variant_reaches_by", "median first step with {column} >= {level:g} in variant {variant} <= {limit:,}")
def variant_reaches_by(result: ExperimentResult, variant: str, column: str, level: float, limit: float) -> Outcome:
    """One variant's runs reach a level of a metric (e.g. test_acc 0.95) by a step, in the median run; the other
    variants' steps are listed beside it."""
    frame = steps_to_level(result, column, level)
    mine = frame[frame["variant"] == variant]
    if mine.empty:
        return f"no run of variant {variant!r}", None
    median = _median_step(mine["step"])
    return f"median first step per variant: {_listing(frame)}", bool(median == median and median <= limit)


@check("steps_to_level", "an observation: the median first step with {column} >= {level:g}, variant by variant")
def steps_to_level_check(result: ExperimentResult, column: str, level: float) -> Outcome:
    """How soon each variant reaches a level, side by side (a method against its baselines), not pass/fail."""
    frame = steps_to_level(result, column, level)
    if frame.empty:
        return "no finished runs", None
    return f"median first step per variant: {_listing(frame)}", None


def _final_of_variant(result: ExperimentResult, variant: str, column: str) -> tuple[str, float | None]:
    """The median over a variant's runs of their last measured `column` (None: no run of it measured it), and
    every variant's median, listed."""
    last = result.last_measured(column)
    variants = result.runs.set_index("run_id").get("variant", pd.Series("", index=result.runs["run_id"]))
    frame = pd.DataFrame({"value": last, "variant": variants.reindex(last.index)})
    mine = frame[frame["variant"] == variant]["value"]
    if mine.empty:
        return f"no {column} measured in variant {variant!r}", None
    listing = ", ".join(f"{v}: {g.median():.3g}" for v, g in frame.groupby("variant", sort=False)["value"])
    return f"median final {column} per variant: {listing}", float(mine.median())


@check("variant_ends_above", "median final {column} in variant {variant} >= {limit:g}")
def variant_ends_above(result: ExperimentResult, variant: str, column: str, limit: float) -> Outcome:
    """A variant's runs end with a metric at least `limit` (e.g. the share of collapsed softmaxes)."""
    measured, value = _final_of_variant(result, variant, column)
    return measured, None if value is None else value >= limit


@check("variant_ends_below", "median final {column} in variant {variant} < {limit:g}")
def variant_ends_below(result: ExperimentResult, variant: str, column: str, limit: float) -> Outcome:
    """A variant's runs end with a metric below `limit` (e.g. a test accuracy that stalled)."""
    measured, value = _final_of_variant(result, variant, column)
    return measured, None if value is None else value < limit
