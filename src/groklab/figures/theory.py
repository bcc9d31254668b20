"""Liu et al. 2022's effective-theory figures: the accuracy the representation predicts against the trained one
(Fig. 3), and the steps to reach the representation (Fig. 4), over the training set size."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from groklab.figures.curves import swept_keys
from groklab.figures.registry import register
from groklab.figures.style import TEST, TRAIN, empty, figure
from groklab.store.reader import ExperimentResult


@register(
    "effective_theory",
    "Liu et al.: predicted vs trained accuracy and steps to RQI > 0.95 over the sweep (Figs. 3-4)",
    needs=lambda stored: stored.swept and "predicted_acc" in stored.result.metrics,
)
def effective_theory(result: ExperimentResult) -> Figure:
    """Left: final test accuracy, the accuracy the learned representation predicts, and Acc-bar (what the
    training set allows), over the swept key; right: the step RQI first exceeds 0.95 (hollow: never)."""
    runs, swept = result.runs, swept_keys(result)
    if not swept or "predicted_acc" not in result.metrics:
        return empty("no effective-theory measures over a sweep")
    key = swept[0]
    frame = runs.set_index("run_id")[[key]].assign(
        real=result.last_measured("test_acc"),
        predicted=result.last_measured("predicted_acc"),
        ideal=runs.set_index("run_id").get("ideal_acc"),
    )
    fig, (acc_ax, rqi_ax) = figure(2, 3.4, 2.6)
    medians = frame.groupby(key).median()
    for column, color, label in (
        ("ideal", "grey", "ideal (Acc-bar)"),
        ("predicted", TRAIN, "predicted"),
        ("real", TEST, "trained"),
    ):
        if frame[column].notna().any():
            acc_ax.scatter(frame[key], frame[column], s=10, color=color, alpha=0.5)
            acc_ax.plot(medians.index, medians[column], color=color, label=label)
    acc_ax.set(xlabel=key, ylabel="final test accuracy", ylim=(-0.03, 1.03))
    acc_ax.legend(frameon=False)
    steps = pd.to_numeric(runs.get("rqi_step", pd.Series(np.nan, index=runs.index)), errors="coerce")
    reached = steps.notna()
    budget = float(runs["steps"].max())
    rqi_ax.scatter(runs[key][reached], steps[reached], s=12, color=TRAIN, label="run")
    rqi_ax.scatter(runs[key][~reached], np.full(int((~reached).sum()), budget), s=12, marker="^", facecolors="none",
                   edgecolors="grey", label="never (drawn at the budget)")  # fmt: skip
    rqi_ax.plot(*zip(*sorted(runs.assign(s=steps.fillna(budget)).groupby(key)["s"].median().items())), color=TRAIN)
    rqi_ax.set(xlabel=key, ylabel="steps to RQI > 0.95", yscale="log")
    rqi_ax.legend(frameon=False)
    return fig
