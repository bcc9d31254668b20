"""The check registry, and helpers the checks share.

A check is a function check(result, **params) -> (measured, met): `measured` says the number, `met` is
True/False, or None when the experiment does not contain what the claim needs (e.g. a sweep it lacks).
Registered with `check(name, condition)`: `condition` is a format string over the parameters, the
"checked: ..." sentence a reader sees, so each threshold is written once, in the spec's `claims:`.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter, ValidationError

from groklab.config import SpecError
from groklab.plugins import package_of
from groklab.store.reader import ExperimentResult

Outcome = tuple[str, bool | None]


@dataclass(frozen=True)
class Check:
    """A registered check: its function, the sentence template of its condition, its parameters."""

    name: str
    fn: Callable[..., Outcome]
    condition: str

    @property
    def params(self) -> dict[str, Any]:
        """Parameter name -> default (inspect.Parameter.empty when required)."""
        return {n: p.default for n, p in list(inspect.signature(self.fn).parameters.items())[1:]}

    def describe(self, params: dict[str, Any]) -> str:
        """The checked condition in words, e.g. 'median memorized_step <= 40'."""
        shown = {
            n: ", ".join(map(str, v)) if isinstance(v, list) else v for n, v in {**self.defaults(), **params}.items()
        }
        return self.condition.format(**shown)

    @property
    def package(self) -> str:
        """The installed package that registered it (a plugin's, or groklab)."""
        return package_of(self.fn.__module__)

    def defaults(self) -> dict[str, Any]:
        return {n: d for n, d in self.params.items() if d is not inspect.Parameter.empty}

    def validate(self, params: dict[str, Any], where: str) -> None:
        """Raise SpecError for unknown or missing parameters, or one of another type than the check's signature
        says (a limit `soon` where a number belongs)."""
        unknown = sorted(set(params) - set(self.params))
        missing = sorted(n for n, d in self.params.items() if d is inspect.Parameter.empty and n not in params)
        allowed = ", ".join(self.params) or "none"
        if unknown:
            raise SpecError(
                f"{where}.params: unknown parameter(s) {', '.join(unknown)} of check {self.name}; allowed: {allowed}"
            )
        if missing:
            raise SpecError(f"{where}.params: check {self.name} needs {', '.join(missing)}; allowed: {allowed}")
        hints = typing.get_type_hints(self.fn)
        for name, value in params.items():
            try:
                TypeAdapter(hints.get(name, Any)).validate_python(value, strict=True)
            except ValidationError:
                hint = hints.get(name)
                wanted = hint.__name__ if isinstance(hint, type) else str(hint)
                raise SpecError(f"{where}.params.{name}: {value!r:.40} is not a {wanted}") from None


CHECKS: dict[str, Check] = {}


def check(name: str, condition: str) -> Callable[[Callable[..., Outcome]], Callable[..., Outcome]]:
    """Decorator (public: `groklab.check`): register a claims check under `name`. `fn(result, **params)` returns
    (measured, met): what was measured in words, and True / False, or None when the experiment lacks what the
    claim needs; its typed keyword parameters are what a spec's `claims:` entry gives in `params` (checked
    against the annotations before any run). `condition` is the checked condition as a format string over the
    parameters, e.g. "median {column} <= {limit}". docs/extending.md has a worked example."""

    def add(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
        CHECKS[name] = Check(name, fn, condition)
        return fn

    return add


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


def first_step_below(result: ExperimentResult, column: str, level: float) -> float | None:
    """Median over runs of the first evaluated step where a metrics `column` < level."""
    metrics = result.metrics
    if column not in metrics:
        return None
    steps = []
    for _, frame in metrics.groupby("run_id"):
        below = frame[frame[column] < level]
        if len(below):
            steps.append(float(below["step"].iloc[0]))
    return float(np.median(steps)) if steps else None
