"""Varma et al. 2023's ungrokking figure: over the training-set size a run ends with, each variant's final test
accuracy (D_crit marked) and its circuit efficiency (logit scale per parameter norm)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from groklab.figures.registry import register
from groklab.figures.style import colors_for, empty, figure
from groklab.store.reader import ExperimentResult

KEPT = "task.on_generalized.train_fraction"


@register(
    "ungrokking",
    "Varma et al.: final test accuracy and efficiency over the kept training fraction, per variant",
    needs=lambda stored: KEPT in stored.result.runs and "variant" in stored.result.runs,
)
def ungrokking(result: ExperimentResult) -> Figure:
    """Two panels over the kept training fraction, one line per variant (median over seeds): final test accuracy,
    and final efficiency where the `efficiency` measure was stored."""
    runs = result.runs
    if KEPT not in runs or "variant" not in runs:
        return empty(f"needs variants swept over {KEPT} (varma-ungrokking)")
    last = result.metrics.sort_values("step").groupby("run_id").last()
    runs = runs.join(last[["efficiency"]] if "efficiency" in last else pd.DataFrame(index=last.index), on="run_id")
    fig, (acc_ax, eff_ax) = figure(2)
    colors = colors_for(list(runs["variant"].unique()))
    for variant, group in runs.groupby("variant", sort=False):
        medians = group.groupby(KEPT)[[c for c in ("final_test_acc", "efficiency") if c in group]].median()
        acc_ax.plot(medians.index, medians["final_test_acc"], "o-", color=colors[variant], label=variant)
        if "efficiency" in medians:
            eff_ax.plot(medians.index, medians["efficiency"], "o-", color=colors[variant], label=variant)
    acc_ax.set_ylabel("final test accuracy")
    eff_ax.set_ylabel("efficiency (logit scale / |theta|)")
    for ax in (acc_ax, eff_ax):
        ax.set_xlabel("kept training fraction")
    acc_ax.legend(frameon=False)
    return fig
