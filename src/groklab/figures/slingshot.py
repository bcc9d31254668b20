"""Thilak et al. 2022's slingshot figures: the last-layer norm, train loss and test accuracy over steps with each
slingshot's onset and the generalization step marked, and the slingshot count over a swept key (Adam's eps)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from groklab.figures.curves import swept_keys
from groklab.figures.registry import register
from groklab.figures.style import TEST, TRAIN, colors_for, empty, figure, group_labels
from groklab.store.reader import ExperimentResult


def _onsets(value: object) -> list[int]:
    return list(value) if isinstance(value, list) else []


@register(
    "slingshots",
    "Thilak et al.: last-layer norm, train loss and test accuracy with slingshot onsets and generalization marked",
    needs=lambda stored: (
        "slingshot_steps" in stored.result.runs and stored.result.runs["slingshot_steps"].map(bool).any()
    ),
)
def slingshots(result: ExperimentResult) -> Figure:
    """Per run (colored by the first swept key): last-layer norm, train loss and test accuracy over steps; dots
    mark slingshot onsets on every curve, a dashed line the step the run generalized (test accuracy >= 99%)."""
    runs, metrics = result.runs, result.metrics
    if "slingshot_steps" not in runs or "last_layer_norm" not in metrics:
        return empty("no slingshot_steps or last_layer_norm stored (measures.names: weight_norms)")
    swept = swept_keys(result)
    labels = group_labels(runs, swept)
    colors = colors_for(list(runs[swept[0]]) if swept else list(runs["run_id"]))
    fig, axes = figure(3, 3.0, 2.5)
    panels = (("last_layer_norm", "last-layer weight norm", False), ("train_loss", "train loss", True),
              ("test_acc", "test accuracy", False))  # fmt: skip
    for _, run in runs.iterrows():
        color = colors[run[swept[0]] if swept else run["run_id"]]
        frame = metrics[metrics["run_id"] == run["run_id"]].dropna(subset=["last_layer_norm"])
        onsets = _onsets(run["slingshot_steps"])
        for ax, (column, _, _) in zip(axes, panels):
            ax.plot(frame["step"], frame[column], color=color, lw=0.9, label=labels[run["run_id"]])
            at = frame[frame["step"].isin(onsets)]
            ax.scatter(at["step"], at[column], color=color, s=14, zorder=3, edgecolors="black", linewidths=0.4)
            if pd.notna(run["generalized_step"]):
                ax.axvline(float(run["generalized_step"]), color=color, linestyle="--", lw=0.9)
    for ax, (_, label, log_y) in zip(axes, panels):
        ax.set(xlabel="optimization step", ylabel=label)
        if log_y:
            ax.set_yscale("log")
    marks = [Line2D([], [], marker="o", color="grey", markeredgecolor="black", lw=0, label="slingshot onset")]
    if runs["generalized_step"].notna().any():
        marks.append(Line2D([], [], color="grey", linestyle="--", label="generalized (99%)"))
    handles, _ = axes[0].get_legend_handles_labels()
    fig.legend(handles=handles + marks, loc="outside right upper", frameon=False)
    return fig


@register(
    "slingshot_count",
    "Thilak et al.: slingshots per run and final test accuracy over the sweep",
    needs=lambda stored: stored.swept and "slingshot_steps" in stored.result.runs,
)
def slingshot_count(result: ExperimentResult) -> Figure:
    """Left: slingshots per run over the swept key (dots: runs, line: median over seeds); right: final test
    accuracy over it, and the share of runs that generalized (Thilak et al.: eps suppresses both)."""
    runs, swept = result.runs, swept_keys(result)
    if not swept or "slingshot_steps" not in runs:
        return empty("no slingshot counts over a sweep")
    key = swept[0]
    if not pd.api.types.is_numeric_dtype(runs[key]):
        return empty(f"slingshot counts over a numeric sweep; {key} is not one")
    frame = runs.assign(
        count=[len(_onsets(v)) for v in runs["slingshot_steps"]],
        generalized=runs["generalized_step"].notna().astype(float),
    )
    x = frame[key].astype(float)
    fig, (count_ax, acc_ax) = figure(2, 3.2, 2.5)
    medians = frame.groupby(key)[["count", "final_test_acc"]].median()
    count_ax.scatter(x, frame["count"], color=TRAIN, s=14)
    count_ax.plot(medians.index.astype(float), medians["count"], color=TRAIN)
    count_ax.set(xlabel=key, ylabel="slingshots per run")
    acc_ax.scatter(x, frame["final_test_acc"], color=TEST, s=14)
    acc_ax.plot(medians.index.astype(float), medians["final_test_acc"], color=TEST, label="final test accuracy")
    shares = frame.groupby(key)["generalized"].mean()
    acc_ax.plot(shares.index.astype(float), shares.to_numpy(), color="grey", linestyle="--", label="share generalized")
    acc_ax.set(xlabel=key, ylabel="test accuracy / share", ylim=(-0.03, 1.03))
    acc_ax.legend(frameon=False)
    if (x > 0).all() and x.max() / x.min() >= 10:
        for ax in (count_ax, acc_ax):
            ax.set_xscale("log")
    count_ax.set_ylim(bottom=-0.5)
    return fig
