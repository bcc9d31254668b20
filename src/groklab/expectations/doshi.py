"""Doshi et al. 2023's claims: pruning memorizing neurons, and the regularizers (dropout, BatchNorm)."""

from __future__ import annotations

import pandas as pd

from groklab.expectations.base import Outcome, check
from groklab.store.reader import ExperimentResult


@check("pruning_unlearns", "corrupted-label fit cut to x{fraction:g} with test >= {test:g}, every coexistence run")
def pruning_unlearns(result: ExperimentResult, fraction: float = 0.5, test: float = 0.9) -> Outcome:
    """On every coexistence run: is there a pruning depth that cuts the corrupted-label fit to `fraction` of
    its value while the test accuracy stays >= `test`?"""
    runs = result.runs
    chosen = runs[runs.get("doshi_phase", pd.Series(dtype=object)) == "coexistence"]["run_id"].tolist()
    if not chosen:
        return "no run in coexistence", None
    hits = 0
    for run_id in chosen:
        curve = result.series(run_id)
        if "prune_corrupted_acc" not in curve:
            continue
        corrupted = curve["prune_corrupted_acc"]
        hits += bool(((corrupted <= fraction * corrupted[0]) & (curve["prune_test_acc"] >= test)).any())
    return f"{hits} of {len(chosen)} coexistence runs", hits == len(chosen)


def _final(result: ExperimentResult, key: str, column: str) -> pd.DataFrame | None:
    """Per noise level (rows) and value of `key` (columns): the median over runs of a per-run column."""
    runs = result.runs
    if key not in runs or "task.label_noise" not in runs:
        return None
    if column not in runs:  # a measure's column: its last evaluated value
        last = result.last_measured(column)
        if last.empty:
            return None
        runs = runs.assign(**{column: runs["run_id"].map(last)})
    values = runs.assign(v=pd.to_numeric(runs[column], errors="coerce").astype(float))
    return values.pivot_table(index="task.label_noise", columns=key, values="v", aggfunc="median")


@check(
    "dropout_unlearns",
    "at every noise level some dropout rate reaches test >= {test:g} with at most x{fraction:g} the "
    "corrupted-label fit of dropout 0",
)
def dropout_unlearns(result: ExperimentResult, fraction: float = 0.5, test: float = 0.9) -> Outcome:
    """Dropout prevents the memorization of corrupted labels and keeps generalization."""
    fit = _final(result, "model.dropout", "corrupted_acc")
    test_acc = _final(result, "model.dropout", "final_test_acc")
    if fit is None or test_acc is None or 0.0 not in fit.columns or len(fit.columns) < 2:
        return "needs a model.dropout sweep including 0", None
    parts, met = [], True
    for noise, row in fit.iterrows():
        good = [r for r in fit.columns if r > 0 and test_acc.loc[noise, r] >= test]
        best = min(good, key=lambda r: row[r]) if good else None
        ok = best is not None and row[best] <= fraction * row[0.0]
        met &= ok
        shown = f"{row[best]:.2f} at dropout {best:g}" if best is not None else f"no dropout run with test >= {test:g}"
        parts.append(f"noise {noise:g}: {row[0.0]:.2f} -> {shown}")
    return "corrupted-label fit " + "; ".join(parts), met


@check("raises_ipr", "final mean neuron IPR higher at the largest {key} than at the smallest, every noise level")
def raises_ipr(result: ExperimentResult, key: str) -> Outcome:
    """A regularizer makes the neurons periodic (generalizing): their mean IPR rises with it."""
    ipr = _final(result, key, "neuron_ipr_mean")
    if ipr is None or len(ipr.columns) < 2:
        return f"needs a {key} sweep and neuron_ipr", None
    low, high = ipr.columns.min(), ipr.columns.max()
    parts = [f"noise {n:g}: {r[low]:.2f} -> {r[high]:.2f}" for n, r in ipr.iterrows()]
    return f"mean neuron IPR at {key} {low:g} -> {high:g}: " + "; ".join(parts), bool((ipr[high] > ipr[low]).all())


@check(
    "batchnorm_amplifies",
    "Spearman rho between a neuron's BatchNorm gain |gamma|/sigma and its IPR > {rho:g}, every BatchNorm run",
)
def batchnorm_amplifies(result: ExperimentResult, rho: float) -> Outcome:
    """BatchNorm amplifies periodic (high-IPR) neurons and de-amplifies memorizing ones."""
    runs = result.runs
    if "batchnorm_gain_ipr" not in runs:
        return "no BatchNorm run", None
    measured = pd.to_numeric(runs["batchnorm_gain_ipr"], errors="coerce").dropna()
    if measured.empty:
        return "no BatchNorm run", None
    listing = ", ".join(f"{v:.2f}" for v in measured)
    return f"Spearman rho(gain, IPR) per BatchNorm run: {listing}", bool((measured > rho).all())


@check("batchnorm_unlearns", "final corrupted-label fit lower with BatchNorm than without, every noise level")
def batchnorm_unlearns(result: ExperimentResult) -> Outcome:
    """BatchNorm reduces the memorization of corrupted labels."""
    fit = _final(result, "model.batchnorm", "corrupted_acc")
    if fit is None or set(fit.columns) != {False, True}:
        return "needs model.batchnorm swept over false, true", None
    parts = [f"noise {n:g}: {r[False]:.2f} -> {r[True]:.2f}" for n, r in fit.iterrows()]
    return "corrupted-label fit without -> with BatchNorm: " + "; ".join(parts), bool((fit[True] < fit[False]).all())
