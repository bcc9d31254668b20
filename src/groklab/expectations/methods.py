"""Claims of the methods that control grokking, compared variant by variant (a spec's `variants`): how soon each
reaches a level, e.g. Grokfast's iterations to 95% validation accuracy against its baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from groklab.expectations.base import Outcome, check
from groklab.store.reader import ExperimentResult


def steps_to_level(result: ExperimentResult, column: str, level: float) -> pd.DataFrame:
    """Per run of each variant's best swept setting (all runs where nothing is swept): its variant and the first
    evaluated step where `column` >= level (NaN: never in its budget). ExperimentResult.at_best_setting."""
    return result.at_best_setting(column, level)


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


@check(
    "faster_than",
    "median first step with {column} >= {level:g}: variant {variant} >= {factor:g}x sooner than variant {baseline}, "
    "both measured here",
)
def faster_than(
    result: ExperimentResult, variant: str, baseline: str, column: str, level: float, factor: float = 1.0
) -> Outcome:
    """A method against its baseline measured in the same experiment, task and budget, not against a number from
    elsewhere: the baseline's median step to the level over the variant's is at least `factor`. A run that never gets
    there counts as infinitely late. Where the baseline's median run never gets there, the speed-up is at least its
    budget over the variant's step: met if that bound reaches `factor`, else it cannot tell (n/a). Not met when the
    variant's median run never gets there (and the baseline's does), or the speed-up falls short of `factor`."""
    frame = steps_to_level(result, column, level)
    mine, theirs = frame[frame["variant"] == variant]["step"], frame[frame["variant"] == baseline]["step"]
    if mine.empty or theirs.empty:
        return f"no run of variant {variant if mine.empty else baseline!r}", None
    fast, slow = _median_step(mine), _median_step(theirs)
    listing = f"median first step per variant: {_listing(frame)}"
    if fast != fast:  # the variant's median run never got there
        return listing, False if slow == slow else None
    if slow != slow:  # the baseline's median run never did: the speed-up is at least its budget over ours
        runs = result.runs.set_index("run_id")
        budget = float(runs.loc[frame[frame["variant"] == baseline]["run_id"], "steps"].median())
        bound = budget / max(fast, 1.0)
        return (
            f"{listing}; {baseline} not there in {budget:,.0f} steps: >= {bound:.3g}x",
            True if bound >= factor else None,
        )
    speedup = slow / max(fast, 1.0)
    return f"{listing}; {speedup:.3g}x", bool(speedup >= factor)


@check(
    "leaderboard", "an observation: every variant at its best setting, ranked by median steps to {column} >= {level:g}"
)
def leaderboard(result: ExperimentResult, column: str, level: float) -> Outcome:
    """The race's table (docs/race.md): each variant at its best swept setting (the same grid for every variant),
    fastest first; for each, the median [quartiles] of steps to the level over its seeds (a seed that never gets
    there counts as infinitely late), how many got there, and the median wall time to it. Not pass/fail."""
    frame = steps_to_level(result, column, level)
    if frame.empty:
        return "no finished runs", None
    entries = []
    for variant, runs in frame.groupby("variant", sort=False):
        late = np.sort(runs["step"].fillna(np.inf).to_numpy())
        quartiles = [_quantile(late, q) for q in (0.25, 0.5, 0.75)]
        shown = ["never" if not np.isfinite(q) else f"{q:,.0f}" for q in quartiles]
        wall = runs["wall_s"].median()
        timing = f", {wall:.3g} s" if wall == wall else ""
        where = f" ({runs['setting'].iloc[0]})" if runs["setting"].iloc[0] else ""
        entries.append((quartiles[1], f"{variant or 'all'}{where}: {shown[1]} [{shown[0]}-{shown[2]}] "
                                      f"{int(runs['step'].notna().sum())}/{len(runs)}{timing}"))  # fmt: skip
    ranked = sorted(entries, key=lambda entry: entry[0])
    return "; ".join(f"{rank}. {text}" for rank, (_, text) in enumerate(ranked, 1)), None


def _quantile(ordered: np.ndarray, q: float) -> float:
    """The q-quantile of sorted steps, interpolated as numpy's default, where a seed that never got there is inf:
    between a step and inf the quantile is inf, never the NaN that inf - inf or 0 x inf would give.

    >>> _quantile(np.array([200.0, 300.0, np.inf]), 0.5), _quantile(np.array([200.0, 300.0, np.inf]), 0.75)
    (300.0, inf)
    """
    position = q * (len(ordered) - 1)
    low, high = ordered[int(np.floor(position))], ordered[int(np.ceil(position))]
    if low == high or not np.isfinite(high):
        return float(high if position % 1 else low)
    return float(low + (high - low) * (position % 1))


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


@check("every_variant_ends_above", "median final {column} >= {limit:g} in every variant")
def every_variant_ends_above(result: ExperimentResult, column: str, limit: float) -> Outcome:
    """Something every variant shares whatever else it changes (e.g. Zhong et al.'s circular embeddings, clock or
    pizza). Not met when one variant's median falls below `limit`; that variant is named."""
    variants = result.runs["variant"].fillna("").unique() if "variant" in result.runs else [""]
    finals = {str(v): _final_of_variant(result, str(v), column)[1] for v in variants}
    measured = {variant: value for variant, value in finals.items() if value is not None}
    if not measured:
        return f"no {column} measured", None
    lowest = min(measured, key=measured.__getitem__)
    if list(measured) == [""]:  # no variants: the experiment's runs
        return f"median final {column}: {measured['']:.3g}", measured[""] >= limit
    return f"{_final_of_variant(result, lowest, column)[0]}; lowest: {lowest}", measured[lowest] >= limit


@check("ends_higher_where", "median final {column} over runs with {key} = {value} > over the other runs")
def ends_higher_where(result: ExperimentResult, column: str, key: str, value: str) -> Outcome:
    """Runs labelled one way (e.g. Doshi et al.'s memorization phase, key doshi_phase) end with more of a measure
    (e.g. correlation traps) than the rest of the experiment. Not met when their median is not above the others'."""
    runs = result.runs.set_index("run_id")
    if key not in runs or column not in result.metrics:
        return f"no {key} or no {column} stored", None
    last = result.last_measured(column)
    labelled = runs[key].astype(str).reindex(last.index) == str(value)
    if not labelled.any() or labelled.all():
        return f"{int(labelled.sum())} of {len(labelled)} runs with {key} = {value}: nothing to compare", None
    mine, others = float(last[labelled].median()), float(last[~labelled].median())
    counted = f"{int(labelled.sum())} run(s) {mine:.3g}, the other {int((~labelled).sum())} {others:.3g}"
    return f"median final {column}: {key} = {value}: {counted}", mine > others


@check("variant_ends_higher", "median final {column} in variant {variant} > in variant {other}")
def variant_ends_higher(result: ExperimentResult, variant: str, other: str, column: str) -> Outcome:
    """Two variants of one experiment compared on where a per-run quantity ends (e.g. Zhong et al.'s distance
    irrelevance, higher for the clock than for the pizza). Not met when `variant`'s median is not above `other`'s."""
    measured, mine = _final_of_variant(result, variant, column)
    _, theirs = _final_of_variant(result, other, column)
    return measured, None if mine is None or theirs is None else mine > theirs
