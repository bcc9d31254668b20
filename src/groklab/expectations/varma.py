"""Claims of Varma et al. 2023 ("Explaining grokking through circuit efficiency"): memorizing gets less efficient
as the training set grows while generalizing does not, so there is a critical size D_crit. Trained on fewer
examples than D_crit a network does not generalize; one that generalized on more and is then trained on fewer
falls back (ungrokking); near D_crit test accuracy settles partway (semi-grokking).

The checks read two variants swept over the same fractions (e.g. task.on_generalized.train_fraction): a
`reference` trained on each fraction from the start, which places D_crit, and the variant that generalized on
a larger set before its set shrank to that fraction.
"""

from __future__ import annotations

import pandas as pd

from groklab.expectations.base import Outcome, check
from groklab.store.reader import ExperimentResult


def _variant_runs(result: ExperimentResult, key: str, variant: str) -> pd.DataFrame:
    runs = result.runs
    if key not in runs or "variant" not in runs:
        return runs.iloc[:0]
    return runs[runs["variant"] == variant]


def critical_value(result: ExperimentResult, key: str, reference: str) -> float | None:
    """D_crit: the smallest value of `key` from which the median run of the reference variant generalizes at
    every larger value too (None: no value does, or the reference variant is missing)."""
    runs = _variant_runs(result, key, reference)
    if runs.empty:
        return None
    generalized = runs.assign(g=runs["generalized_step"].notna()).groupby(key)["g"].median().sort_index() > 0.5
    critical = None
    for value, ok in generalized[::-1].items():  # from the largest value down, while every one generalizes
        if not ok:
            break
        critical = float(value)
    return critical


def _finals(result: ExperimentResult, key: str, variant: str) -> pd.Series:
    runs = _variant_runs(result, key, variant)
    return pd.to_numeric(runs["final_test_acc"], errors="coerce").groupby(runs[key]).median().sort_index()


def _shown(finals: pd.Series) -> str:
    return ", ".join(f"{v:g}: {a:.2f}" for v, a in finals.items())


@check("critical_size", "an observation: the smallest {key} from which variant {reference} always generalizes")
def critical_size(result: ExperimentResult, key: str, reference: str) -> Outcome:
    """D_crit, measured from a sweep trained from the start at each size, with the final test accuracies."""
    critical = critical_value(result, key, reference)
    found = f"D_crit = {critical:g}" if critical is not None else "no D_crit: the largest value does not generalize"
    return f"{found}; final test_acc of {reference} by {key}: {_shown(_finals(result, key, reference))}", None


@check(
    "ungrokks_below_critical",
    "variant {variant}: every {key} below D_crit (from {reference}) generalized, then ended with test_acc < {level:g}",
)
def ungrokks_below_critical(result: ExperimentResult, key: str, variant: str, reference: str, level: float) -> Outcome:
    """Ungrokking: the runs that generalized and then trained on fewer examples than D_crit lose it."""
    critical, finals = critical_value(result, key, reference), _finals(result, key, variant)
    below = finals[finals.index < critical] if critical is not None else finals.iloc[:0]
    if critical is None or below.empty:
        return f"no {key} below D_crit ({critical})", None
    runs = _variant_runs(result, key, variant)
    generalized = runs[runs[key] < critical]["generalized_step"].notna().all()
    shown = f"D_crit = {critical:g}; final test_acc of {variant}: {_shown(finals)}"
    return shown + ("" if generalized else " (some never generalized first)"), bool(
        generalized and (below < level).all()
    )


@check(
    "stays_above_critical",
    "variant {variant}: every {key} at or above D_crit (from {reference}) ends with test_acc >= {level:g}",
)
def stays_above_critical(result: ExperimentResult, key: str, variant: str, reference: str, level: float) -> Outcome:
    """No ungrokking where the smaller training set is still at least D_crit."""
    critical, finals = critical_value(result, key, reference), _finals(result, key, variant)
    above = finals[finals.index >= critical] if critical is not None else finals.iloc[:0]
    if above.empty:
        return f"no {key} at or above D_crit ({critical})", None
    return f"D_crit = {critical:g}; final test_acc of {variant}: {_shown(finals)}", bool((above >= level).all())


@check("settles_partway", "variant {variant}: some {key} ends with test_acc in ({low:g}, {high:g})")
def settles_partway(result: ExperimentResult, key: str, variant: str, low: float, high: float) -> Outcome:
    """Semi-grokking: at some size (near D_crit) test accuracy settles between no and full generalization."""
    finals = _finals(result, key, variant)
    if finals.empty:
        return f"no run of variant {variant!r} over {key}", None
    partway = finals[(finals > low) & (finals < high)]
    where = ", ".join(f"{v:g}" for v in partway.index) or "none"
    return f"final test_acc of {variant}: {_shown(finals)}; partway at {where}", bool(len(partway))
