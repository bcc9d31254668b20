"""Figures over steps and over sweeps: learning curves, any measure, phase diagrams."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from groklab.figures.registry import register, runs_with, swept
from groklab.figures.style import (
    TEST,
    TRAIN,
    colormap,
    colors_for,
    empty,
    figure,
    figure_grid,
    group_labels,
    log_steps,
    short,
)
from groklab.store.reader import ExperimentResult

OVERVIEW = [  # (title, columns, log y): the measures panel, in this order, where present
    ("weight norm", ["weight_norm", "last_layer_norm"], False),
    ("mean neuron IPR", ["neuron_ipr_mean"], False),
    ("restricted / excluded loss", ["restricted_loss", "excluded_loss", "test_loss", "train_loss"], True),
    ("Gini of embedding Fourier norms", ["embedding_gini"], False),
    ("distance from init", ["init_distance"], False),
    ("large neurons", ["large_neurons"], False),
    ("size of a weight update", ["update_norm"], True),
    ("accuracy on clean / corrupted train labels", ["clean_acc", "corrupted_acc", "corrupted_true_acc"], False),
    ("variance explained by the relevant bits", ["parity_clustering"], False),
    ("representation quality index", ["rqi"], False),
    ("local learning coefficient", ["llc"], False),
    ("NTK change from init / alignment", ["ntk_change", "ntk_alignment"], True),
]


def swept_keys(result: ExperimentResult) -> list[str]:
    """The experiment's sweep keys, in spec order."""
    return list((result.spec.get("sweep") or {}).keys())


def groups(result: ExperimentResult) -> list[tuple[str, list[str], Any]]:
    """Variants x sweep points: (label, run ids, color value = the variant, else the first swept key's value)."""
    runs, swept = result.runs, result.varied_keys
    if runs.empty:
        return []
    if not swept:
        return [("all seeds" if len(runs) > 1 else "", list(runs["run_id"]), None)]
    out = []
    for values, frame in runs.groupby(swept, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        label = group_labels(frame.head(1), swept)[frame["run_id"].iloc[0]]
        out.append((label, list(frame["run_id"]), values[0]))
    return out


def _mean_band(metrics: pd.DataFrame, run_ids: list[str], column: str) -> tuple[np.ndarray, ...]:
    """Steps, mean, min and max of a column over the runs (NaN rows skipped)."""
    frame = metrics[metrics["run_id"].isin(run_ids)].pivot_table(index="step", columns="run_id", values=column)
    frame = frame.dropna(how="all")
    low, high = frame.min(axis=1).to_numpy(), frame.max(axis=1).to_numpy()
    return frame.index.to_numpy(), frame.mean(axis=1).to_numpy(), low, high


def _line(ax: Axes, metrics: pd.DataFrame, ids: list[str], column: str, log_y: bool = False, **style: Any) -> None:
    steps, mean, low, high = _mean_band(metrics, ids, column)
    if log_y:  # e.g. a zero-size update at step 0 under warmup: no place on a log axis
        keep = mean > 0
        steps, mean, low, high = steps[keep], mean[keep], low[keep], high[keep]
    if len(steps) == 0:
        return
    ax.plot(steps, mean, **style)
    if len(ids) > 1:
        ax.fill_between(steps, low, high, color=style.get("color"), alpha=0.15, linewidth=0)


def _loss_label(spec: dict) -> str:
    """The loss axis names the loss when every run trains on the same one (variants and sweeps may differ).

    >>> _loss_label({"train": {"loss": "stablemax"}, "variants": {"sm": {}, "ce": {"train.loss": "cross_entropy"}}})
    'loss'
    >>> _loss_label({"train": {"loss": "stablemax"}, "variants": {"sm": {}, "f64": {"train.loss_dtype": "float64"}}})
    'loss (stablemax)'
    """
    base = spec.get("train", {}).get("loss", "cross_entropy")
    names = {variant.get("train.loss", base) for variant in spec.get("variants", {}).values()} or {base}
    names |= set(spec.get("sweep", {}).get("train.loss", []))
    return f"loss ({names.pop()})" if len(names) == 1 else "loss"


@register(
    "curves",
    "train/test loss and accuracy over steps, mean over seeds, events marked",
    needs=lambda stored: bool(stored.result.rows or stored.result.progress),  # unfinished runs: their curves so far
)
def curves(result: ExperimentResult) -> Figure:
    """Train and test loss and accuracy over steps (mean over seeds, min-max band), events marked; the
    unfinished runs' curves so far, thin and dotted, marked partial."""
    metrics, runs = result.metrics, result.runs
    if runs.empty and not result.progress:
        return empty("no finished runs")
    fig, (loss_ax, acc_ax) = figure(2)
    partial = _partial_curves(result, loss_ax, acc_ax)
    point_groups = groups(result)
    colors = colors_for([g[2] for g in point_groups])
    for label, ids, value in point_groups:
        single = len(point_groups) == 1
        for ax, kind in ((loss_ax, "loss"), (acc_ax, "acc")):
            for split, dash in (("train", "--"), ("test", "-")):
                color = (TRAIN if split == "train" else TEST) if single else colors[value]
                name = f"{split}" if single else f"{label} ({split})"
                _line(ax, metrics, ids, f"{split}_{kind}", color=color, linestyle=dash, label=name)
        chosen = runs[runs["run_id"].isin(ids)]
        for column, color in (("memorized_step", TRAIN), ("generalized_step", TEST)):
            steps = chosen[column].dropna()
            if len(steps):
                acc_ax.axvline(float(np.median(steps)), color=color if single else colors[value], linestyle=":", lw=1)
    loss_ax.set_yscale("log")
    loss_ax.set_ylabel(_loss_label(result.spec))
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_ylim(-0.02, 1.02)
    for ax in (loss_ax, acc_ax):
        log_steps(ax)
    events = Line2D([], [], color="grey", linestyle=":", label="memorized / generalized (99%)")
    if len(point_groups) <= 1:
        handles, _ = acc_ax.get_legend_handles_labels()
        acc_ax.legend(handles=[*handles, events, *partial], loc="best", frameon=False)
    else:  # one entry per sweep point, and the line styles once: beside the panels, not over them
        styles = [Line2D([], [], color="grey", linestyle="--", label="train"),
                  Line2D([], [], color="grey", linestyle="-", label="test")]  # fmt: skip
        fig.legend(handles=_group_handles(point_groups, colors) + styles + [events, *partial],
                   loc="outside right upper", frameon=False)  # fmt: skip
    if result.progress:
        fig.suptitle(f"partial: {len(result.progress)} run(s) unfinished (dotted, as far as they got)")
    return fig


def _partial_curves(result: ExperimentResult, loss_ax: Axes, acc_ax: Axes) -> list[Line2D]:
    """Each unfinished run's curves so far (train and test), thin and dotted; the legend handle, if any."""
    metrics = result.partial_metrics
    if metrics.empty:
        return []
    for _, frame in metrics.groupby("run_id"):
        for ax, kind in ((loss_ax, "loss"), (acc_ax, "acc")):
            for split in ("train", "test"):
                color = TRAIN if split == "train" else TEST
                ax.plot(frame["step"], frame[f"{split}_{kind}"], color=color, linestyle=":", lw=0.8, alpha=0.6)
    return [Line2D([], [], color="grey", linestyle=":", lw=0.8, label="unfinished run (partial)")]


def _group_handles(point_groups: list[tuple[str, list[str], Any]], colors: dict[Any, Any]) -> list[Any]:
    return [Line2D([], [], color=colors[value], label=label) for label, _, value in point_groups]


def measure(result: ExperimentResult, column: str, ax: Axes | None = None, log_y: bool = False) -> Figure | None:
    """One stored scalar measure over steps, one line per sweep point (mean over seeds), colored by value."""
    metrics = result.metrics
    if column not in metrics or metrics[column].isna().all():
        return None
    fig = None
    if ax is None:
        fig, (ax,) = figure(1)
    point_groups = groups(result)
    colors = colors_for([g[2] for g in point_groups])
    for label, ids, value in point_groups:
        _line(ax, metrics, ids, column, log_y, color=colors[value], label=label or None)
    ax.set_ylabel(column)
    if log_y:
        ax.set_yscale("log")
    log_steps(ax)
    if fig is not None and len(point_groups) > 1:
        fig.legend(handles=_group_handles(point_groups, colors), loc="outside right upper", frameon=False)
    return fig if fig is not None else ax.figure  # type: ignore[return-value]


@register("measures", "the stored progress measures over steps, one panel each")
def measures_overview(result: ExperimentResult) -> Figure:
    """The main progress measures of the runs, one panel each (those the runs stored)."""
    metrics = result.metrics
    panels = []
    for title, columns, log_y in OVERVIEW:  # a panel is there when its own measure is (the others are context)
        present = [c for c in columns if c in metrics and not metrics[c].isna().all()]
        if columns[0] in present:
            panels.append((title, present, log_y))
    panels += [(c, [c], False) for c in metrics.columns if c.startswith("spectral.")]
    if not panels:
        return empty("no measures stored (measures.names: none?)")
    fig, axes = figure_grid(len(panels))
    single = len(groups(result)) == 1
    for ax, (title, columns, log_y) in zip(axes, panels):
        if single and len(columns) > 1:
            for column in columns:
                _line(ax, metrics, list(result.runs["run_id"]), column, log_y, label=column)
            ax.legend(frameon=False)
            if log_y:
                ax.set_yscale("log")
            log_steps(ax)
        else:
            measure(result, columns[0], ax, log_y)
        ax.set_title(title)
    point_groups = groups(result)
    if len(point_groups) > 1:
        colors = colors_for([g[2] for g in point_groups])
        fig.legend(handles=_group_handles(point_groups, colors), loc="outside right upper", frameon=False)
    return fig


QUANTITIES = {
    "generalized_step": "step of test accuracy >= 99%",
    "grokking_delay": "generalized - memorized step",
    "final_test_acc": "final test accuracy",
}


@register("sweep", "generalization step over the sweep: a line (one key) or a phase diagram (two)", needs=swept)
def sweep(result: ExperimentResult, quantity: str = "generalized_step") -> Figure:
    """A per-run quantity over the sweep: a line over one swept key, a heat map over two (phase diagram).

    Runs that never reached the quantity (never generalized) are drawn distinctly: hollow triangles
    on the line plot, hatched grey cells on the heat map. Values are medians over seeds.
    """
    runs, swept = result.runs, swept_keys(result)
    if not swept or quantity not in runs:
        return empty("nothing swept: no phase diagram")
    if runs[quantity].map(lambda v: isinstance(v, str)).any():
        return _categorical_sweep(result, quantity)
    label = QUANTITIES.get(quantity, quantity)
    values = pd.to_numeric(runs[quantity], errors="coerce")
    if len(swept) == 1:
        key = swept[0]
        fig, (ax,) = figure(1, 3.6, 2.6)
        x = runs[key].astype(float)
        reached = values.notna()
        ax.scatter(x[reached], values[reached], color=TEST, s=14, label="run")
        top = values.max() if reached.any() else 1.0
        if (~reached).any():
            ax.scatter(x[~reached], np.full((~reached).sum(), top * 1.15), marker="^", facecolors="none",
                       edgecolors="grey", label="never reached (drawn above)")  # fmt: skip
        medians = runs.assign(v=values).groupby(key)["v"].median()
        ax.plot(medians.index.astype(float), medians.to_numpy(), color=TEST, lw=1)
        ax.set_xlabel(key)
        ax.set_ylabel(label)
        if (x > 0).all() and x.max() / max(x.min(), 1e-300) >= 10:
            ax.set_xscale("log")
        ax.legend(frameon=False)
        return fig
    key_x, key_y = swept[0], swept[1]
    table = runs.assign(v=values).groupby([key_y, key_x])["v"].median().unstack(key_x)
    fig, (ax,) = figure(1, 4.2, 3.4)
    data = table.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(data), origin="lower", aspect="auto", cmap="viridis")
    for (i, j), v in np.ndenumerate(data):
        if math.isnan(v):
            ax.add_patch(_never_cell(j, i))
        else:
            shade = "black" if float(np.asarray(image.norm(v))) > 0.6 else "white"  # readable on viridis' light end
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color=shade)
    ax.set_xticks(range(len(table.columns)), [short(v) for v in table.columns], rotation=45)
    ax.set_yticks(range(len(table.index)), [short(v) for v in table.index])
    ax.set_xlabel(key_x)
    ax.set_ylabel(key_y)
    ax.grid(False)
    fig.colorbar(image, ax=ax)
    ax.set_title(f"{label}, median over seeds; hatched: never", fontsize=8)
    return fig


@register("delay", "grokking delay (generalized - memorized) over the sweep", needs=swept)
def delay(result: ExperimentResult) -> Figure:
    return sweep(result, "grokking_delay")


@register(
    "phases",
    "Doshi et al.'s phase of each run over the sweep (label corruption)",
    needs=runs_with("doshi_phase", over_sweep=True),
)
def doshi_phases(result: ExperimentResult) -> Figure:
    return sweep(result, "doshi_phase")


@register(
    "liu_phases",
    "Liu et al.'s learning phase of each run over the sweep (comprehension, grokking, memorization, confusion)",
    needs=runs_with("liu_phase", over_sweep=True),
)
def liu_phases(result: ExperimentResult) -> Figure:
    return sweep(result, "liu_phase")


def _categorical_sweep(result: ExperimentResult, quantity: str) -> Figure:
    """A labelled phase diagram: the most common label over seeds at each point of one or two swept keys."""
    runs, swept = result.runs, swept_keys(result)
    key_x = swept[0]
    key_y = swept[1] if len(swept) > 1 else None
    labels = runs[quantity].fillna("-").astype(str)
    categories = sorted(set(labels))
    group = [key_y, key_x] if key_y else [key_x]
    table = runs.assign(v=labels).groupby(group)["v"].agg(lambda v: v.mode().iloc[0])
    table = table.unstack(key_x) if key_y else table.to_frame().T
    codes = table.apply(lambda column: column.map(categories.index)).to_numpy(dtype=float)
    fig, (ax,) = figure(1, 4.6, 3.4 if key_y else 1.6)
    cmap: Colormap
    if set(categories) <= set(PHASE_COLORS):
        cmap = ListedColormap([PHASE_COLORS[c] for c in categories])
    else:
        cmap = colormap("tab10", len(categories))
    ax.imshow(codes, origin="lower", aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(categories) - 0.5)
    _sparse_ticks(ax.set_xticks, table.columns, rotation=45)
    ax.set_xlabel(key_x)
    if key_y:
        _sparse_ticks(ax.set_yticks, table.index)
        ax.set_ylabel(key_y)
    else:
        ax.set_yticks([])
    ax.grid(False)
    handles = [Patch(color=cmap(i), label=c) for i, c in enumerate(categories)]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, title=quantity)
    return fig


PHASE_COLORS = {
    "comprehension": "#a0da39",
    "grokking": "#fde725",
    "memorization": "#46327e",
    "confusion": "#1e1e1e",
    "-": "#d9d9d9",
}
"""Liu et al.'s phases in their figures' colors (green, yellow, purple, black; the phase-diagram notebooks)."""


def _sparse_ticks(set_ticks: Any, values: pd.Index, **style: Any) -> None:
    """Tick labels of a heat map's axis, every other one (or sparser) when more than 8 would crowd it."""
    every = max(1, -(-len(values) // 8))
    positions = list(range(0, len(values), every))
    set_ticks(positions, [short(values[i]) for i in positions], **style)


def _never_cell(x: int, y: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor="lightgrey", hatch="///", edgecolor="grey", lw=0)
