"""Liu et al. 2022's claims: the effective theory's predicted accuracy, the critical training set size, and the
arrangement of the four learning phases (measures/addition.py; curve_events.liu_phase)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from groklab.expectations.base import Outcome, by_value, check, reached
from groklab.store.reader import ExperimentResult


@check("agrees", "median |final {column} - final {other}| <= {tolerance:g} over the runs")
def agrees(result: ExperimentResult, column: str, other: str, tolerance: float) -> Outcome:
    """Two per-run quantities measured over steps agree at the end of training (e.g. the accuracy Liu et al.'s
    theory predicts and the trained test accuracy)."""
    a, b = result.last_measured(column), result.last_measured(other)
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1).dropna()
    if both.empty:
        return f"no run measured both {column} and {other}", None
    gap = (both["a"] - both["b"]).abs()
    exact = int((gap < 1e-6).sum())  # accuracies are stored in the run's dtype (float32: 9/10 is 0.89999998)
    measured = (f"median |difference| {gap.median():.3f}, largest {gap.max():.3f}; equal in {exact} of "
                f"{len(gap)} runs")  # fmt: skip
    return measured, bool(gap.median() <= tolerance)


@check(
    "agrees_throughout", "median over runs of the largest |{column} - {other}| over the evaluations <= {tolerance:g}"
)
def agrees_throughout(result: ExperimentResult, column: str, other: str, tolerance: float) -> Outcome:
    """Two quantities measured over steps agree along the whole trajectory, not only at its end (a theory that
    predicts the accuracy at every step, e.g. Liu et al.'s). Not met when, in the median run, they are ever further
    apart than `tolerance` at an evaluation that measured both; the step of the widest gap is reported."""
    metrics = result.metrics
    if column not in metrics or other not in metrics:
        return f"no run measured both {column} and {other}", None
    both = metrics.dropna(subset=[column, other])
    if both.empty:
        return f"no evaluation measured both {column} and {other}", None
    gaps = (both[column] - both[other]).abs()
    widest = gaps.groupby(both["run_id"]).max()
    worst = both.loc[gaps.idxmax()]
    measured = (f"median over runs of the widest gap {widest.median():.3f}; widest of all {gaps.max():.3f} "
                f"({column} {worst[column]:.2f} vs {other} {worst[other]:.2f} at step {int(worst['step']):,} of "
                f"{worst['run_id']})")  # fmt: skip
    return measured, bool(widest.median() <= tolerance)


@check("critical", "a {key} below which the median run never reaches {column}, and from which every one does")
def critical(result: ExperimentResult, key: str, column: str) -> Outcome:
    """A critical value of a swept key (Liu et al.'s critical training set size): the median run reaches an event
    (e.g. rqi_step) at every value from it up and at no value below it, and at least one value lies below."""
    steps = by_value(result, key, column)
    if steps is None:
        return f"{key} not swept, or no {column}", None
    counts = reached(result, key, column)
    listing = ", ".join(f"{v:g}: {'never' if s != s else f'{s:.0f}'} ({counts[v]})" for v, s in steps.items())
    reaching = steps.notna().to_numpy()
    if not reaching.any():
        return f"never reached (median {column} at {key} = {listing})", False
    first = int(np.argmax(reaching))
    met = first > 0 and bool(reaching[first:].all())
    return f"critical {key} {steps.index[first]:g} (median {column} at {key} = {listing})", met


@check(
    "phase_arrangement",
    "memorization and confusion at higher median {lr} than comprehension and grokking; memorization at lower "
    "median {wd} than confusion",
)
def phase_arrangement(result: ExperimentResult, lr: str, wd: str) -> Outcome:
    """Liu et al.'s phase diagram (Fig. 6): a fast decoder (high lr) memorizes when capable (low weight decay)
    and is confused when simple (high weight decay); representation learning (comprehension, grokking) happens
    in the slower "Goldilocks zone" between them."""
    runs = result.runs
    if "liu_phase" not in runs or lr not in runs or wd not in runs:
        return f"no liu_phase, {lr} or {wd} in the runs", None
    labelled = runs[["liu_phase", lr, wd]].dropna()
    medians = labelled.groupby("liu_phase")[[lr, wd]].median()
    missing = sorted({"comprehension", "grokking", "memorization", "confusion"} - set(medians.index))
    listing = "; ".join(f"{phase}: {lr} {row[lr]:g}, {wd} {row[wd]:g}" for phase, row in medians.iterrows())
    if missing:
        return f"{', '.join(missing)} absent ({listing})", None
    m = medians.to_dict("index")
    slow = max(m["comprehension"][lr], m["grokking"][lr])
    met = min(m["memorization"][lr], m["confusion"][lr]) > slow and m["memorization"][wd] < m["confusion"][wd]
    return f"medians {listing}", bool(met)
