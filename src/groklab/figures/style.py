"""The look of every figure: paper-sized, labelled axes, a log step axis, one color per swept value."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files, never windows: works headless and in worker processes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

PAPER = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.3,
}
TRAIN, TEST = "#1f77b4", "#d62728"  # train blue, test red, as in Power et al. and the seed figures


@contextmanager
def paper_style() -> Iterator[None]:
    """matplotlib settings for every groklab figure (restored afterwards)."""
    with plt.rc_context(PAPER):
        yield


def figure(n_panels: int = 1, width: float = 3.4, height: float = 2.6) -> tuple[Figure, list[Axes]]:
    """A row of n panels, each width x height inches (a paper column is ~3.4 in)."""
    with paper_style():
        fig, axes = plt.subplots(1, n_panels, figsize=(width * n_panels, height), squeeze=False, layout="constrained")
    return fig, list(axes[0])


def figure_grid(n_panels: int, max_cols: int = 3, width: float = 3.0, height: float = 2.3) -> tuple[Figure, list[Axes]]:
    """n panels in rows of at most max_cols; unused cells are hidden."""
    cols = max(1, min(max_cols, n_panels))
    rows = -(-n_panels // cols)
    with paper_style():
        fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.axis("off")
    return fig, flat[:n_panels]


def log_steps(ax: Axes) -> None:
    """Log step axis that still shows step 0 (linear below 1), labelled."""
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("optimization step")


def group_labels(runs: pd.DataFrame, swept: list[str]) -> dict[str, str]:
    """run_id -> a legend label naming its sweep point (or 'seed s' when nothing is swept)."""
    if not swept:
        return {r: f"seed {s}" for r, s in zip(runs["run_id"], runs["seed"])}
    labels = {}
    for _, row in runs.iterrows():
        labels[row["run_id"]] = ", ".join(f"{k.split('.')[-1]}={short(row[k])}" for k in swept)
    return labels


def colors_for(values: list[Any]) -> dict[Any, Any]:
    """One color per distinct value: a sequential map for numbers (ordered), a qualitative one otherwise."""
    distinct = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct) and len(distinct) > 1:
        order = np.argsort(np.argsort(distinct))
        cmap = plt.get_cmap("viridis")
        return {v: cmap(0.9 * o / (len(distinct) - 1)) for v, o in zip(distinct, order)}
    cmap = plt.get_cmap("tab10")
    return {v: cmap(i % 10) for i, v in enumerate(distinct)}


def short(value: Any) -> str:
    """A swept value as a label: floats to 3 significant digits, integers and names (e.g. an operation) as they are.

    >>> short(0.30000001), short(512), short("x3+xy2+y")
    ('0.3', '512', 'x3+xy2+y')
    """
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def empty(message: str) -> Figure:
    """A small figure that says why there is nothing to draw."""
    fig, (ax,) = figure(1, 3.4, 1.2)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig
