"""Doshi et al. 2023's claims: the label-corruption phases, pruning, and the regularizers (dropout, BatchNorm)."""

from __future__ import annotations

import pandas as pd

from groklab.expectations.base import Expectation
from groklab.store.reader import ExperimentResult

SOURCE = "Doshi et al. 2023"


def _doshi_phases(result: ExperimentResult) -> tuple[str, bool | None]:
    phases = result.runs.get("doshi_phase", pd.Series(dtype=object)).dropna()
    if phases.empty:
        return "no labelled runs", None
    counts = phases.value_counts()
    wanted = ("coexistence", "partial inversion", "full inversion", "forgetting")
    listing = ", ".join(f"{p}: {n}" for p, n in counts.items())
    return f"{listing} (of {len(phases)} runs)", all(p in counts for p in wanted)


def _pruning_unlearns(result: ExperimentResult) -> tuple[str, bool | None]:
    """On every coexistence run: is there a pruning depth that halves the corrupted-label fit while the
    test accuracy stays >= 0.9?"""
    runs = result.runs
    chosen = runs[runs.get("doshi_phase", pd.Series(dtype=object)) == "coexistence"]["run_id"].tolist()
    if not chosen:
        return "no run in coexistence", None
    hits = 0
    for run_id in chosen:
        curve = result.series(run_id)
        if "prune_corrupted_acc" not in curve:
            continue
        corrupted, test = curve["prune_corrupted_acc"], curve["prune_test_acc"]
        hits += bool(((corrupted <= 0.5 * corrupted[0]) & (test >= 0.9)).any())
    return f"{hits} of {len(chosen)} coexistence runs", hits == len(chosen)


def _final(result: ExperimentResult, key: str, column: str) -> pd.DataFrame | None:
    """Per noise level (rows) and value of `key` (columns): the median over runs of a per-run column."""
    runs = result.runs
    if key not in runs or "task.label_noise" not in runs:
        return None
    if column not in runs:  # a measure's column: its last evaluated value
        metrics = result.metrics
        if column not in metrics:
            return None
        last = metrics.dropna(subset=[column]).groupby("run_id")[column].last()
        runs = runs.assign(**{column: runs["run_id"].map(last)})
    values = runs.assign(v=pd.to_numeric(runs[column], errors="coerce").astype(float))
    return values.pivot_table(index="task.label_noise", columns=key, values="v", aggfunc="median")


def _dropout_unlearns(result: ExperimentResult) -> tuple[str, bool | None]:
    """At every noise level: a dropout rate > 0 with test >= 0.9 and at most half the corrupted-label fit of
    dropout 0."""
    fit = _final(result, "model.dropout", "corrupted_acc")
    test = _final(result, "model.dropout", "final_test_acc")
    if fit is None or test is None or 0.0 not in fit.columns or len(fit.columns) < 2:
        return "needs a model.dropout sweep including 0", None
    parts, met = [], True
    for noise, row in fit.iterrows():
        good = [r for r in fit.columns if r > 0 and test.loc[noise, r] >= 0.9]
        best = min(good, key=lambda r: row[r]) if good else None
        ok = best is not None and row[best] <= 0.5 * row[0.0]
        met &= ok
        shown = f"{row[best]:.2f} at dropout {best:g}" if best is not None else "no dropout run with test >= 0.9"
        parts.append(f"noise {noise:g}: {row[0.0]:.2f} -> {shown}")
    return "corrupted-label fit " + "; ".join(parts), met


def _regularizer_raises_ipr(key: str) -> object:
    def check(result: ExperimentResult) -> tuple[str, bool | None]:
        ipr = _final(result, key, "neuron_ipr_mean")
        if ipr is None or len(ipr.columns) < 2:
            return f"needs a {key} sweep and neuron_ipr", None
        low, high = ipr.columns.min(), ipr.columns.max()
        parts = [f"noise {n:g}: {r[low]:.2f} -> {r[high]:.2f}" for n, r in ipr.iterrows()]
        return f"mean neuron IPR at {key} {low:g} -> {high:g}: " + "; ".join(parts), bool((ipr[high] > ipr[low]).all())

    return check


def _batchnorm_amplifies(result: ExperimentResult) -> tuple[str, bool | None]:
    runs = result.runs
    if "batchnorm_gain_ipr" not in runs:
        return "no BatchNorm run", None
    rho = pd.to_numeric(runs["batchnorm_gain_ipr"], errors="coerce").dropna()
    if rho.empty:
        return "no BatchNorm run", None
    listing = ", ".join(f"{v:.2f}" for v in rho)
    return f"Spearman rho(gain, IPR) per BatchNorm run: {listing}", bool((rho > 0.3).all())


def _batchnorm_unlearns(result: ExperimentResult) -> tuple[str, bool | None]:
    fit = _final(result, "model.batchnorm", "corrupted_acc")
    if fit is None or set(fit.columns) != {False, True}:
        return "needs model.batchnorm swept over false, true", None
    parts = [f"noise {n:g}: {r[False]:.2f} -> {r[True]:.2f}" for n, r in fit.iterrows()]
    return "corrupted-label fit without -> with BatchNorm: " + "; ".join(parts), bool((fit[True] < fit[False]).all())


PHASES = Expectation(
    "the phases coexistence, partial inversion, full inversion and forgetting all appear over "
    "weight decay x label noise (checked: each labels at least one run)",
    SOURCE,
    _doshi_phases,
)
PRUNING = Expectation(
    "pruning low-IPR (memorizing) neurons removes the memorized corrupted labels and keeps test "
    "accuracy (checked: corrupted-label fit halved with test >= 0.9, every coexistence run)",
    SOURCE,
    _pruning_unlearns,
)
DOSHI: dict[str, list[Expectation]] = {
    "doshi-corruption": [PHASES, PRUNING],
    "doshi-dropout": [
        Expectation(
            "dropout prevents memorization of corrupted labels and keeps generalization (checked: at every "
            "noise level some dropout rate reaches test >= 0.9 with at most half the corrupted-label fit "
            "of dropout 0)",
            SOURCE,
            _dropout_unlearns,
        ),  # fmt: skip
        Expectation(
            "dropout forces the neurons to learn periodic (generalizing) features (checked: final mean "
            "neuron IPR higher at the largest dropout rate than at 0, every noise level)",
            SOURCE,
            _regularizer_raises_ipr("model.dropout"),
        ),  # fmt: skip
    ],
    "doshi-batchnorm": [
        Expectation(
            "BatchNorm de-amplifies memorizing (low-IPR) neurons and amplifies generalizing ones (checked: "
            "Spearman rho between a neuron's BatchNorm gain |gamma|/sigma and its IPR > 0.3, every BatchNorm run)",
            SOURCE,
            _batchnorm_amplifies,
        ),  # fmt: skip
        Expectation(
            "BatchNorm reduces memorization of corrupted labels (checked: final corrupted-label fit lower "
            "with BatchNorm than without, every noise level)",
            SOURCE,
            _batchnorm_unlearns,
        ),  # fmt: skip
    ],
}
