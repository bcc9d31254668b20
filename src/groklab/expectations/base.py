"""The shape of a checked claim, and helpers the checks share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from groklab.store.reader import ExperimentResult

Check = Callable[[ExperimentResult], tuple[str, bool | None]]


@dataclass(frozen=True)
class Expectation:
    """One claim of a source about an experiment."""

    claim: str
    source: str
    check: Check


def median(result: ExperimentResult, column: str) -> float | None:
    """Median over runs of a per-run column (None if no run has it)."""
    values = pd.to_numeric(result.runs.get(column, pd.Series(dtype=float)), errors="coerce").dropna()
    return float(values.median()) if len(values) else None


def by_value(result: ExperimentResult, key: str, column: str) -> pd.Series | None:
    """Median over runs of a step column (e.g. generalized_step) at each value of a swept key.

    A run that never reached the event counts as infinitely late, so the median is NaN ("never") when
    at most half the runs at that value reached it: runs that failed are not dropped from the median.
    """
    runs = result.runs
    if key not in runs or column not in runs:
        return None
    values = pd.to_numeric(runs[column], errors="coerce").astype(float).fillna(float("inf"))  # Int64 NA -> inf
    medians = runs.assign(v=values).groupby(key)["v"].median().sort_index()
    return medians.where(medians != float("inf"))


def reached(result: ExperimentResult, key: str, column: str) -> dict[object, str]:
    """'k/n' runs that reached a step column's event, at each value of a swept key."""
    runs = result.runs
    hits = pd.to_numeric(runs[column], errors="coerce").notna()
    return {v: f"{int(h.sum())}/{len(h)}" for v, h in hits.groupby(runs[key])}
