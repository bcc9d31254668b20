"""The look of every figure: paper-sized, labelled axes, a log step axis, one color per swept value."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

# Figures are matplotlib.figure.Figure objects, never pyplot's: drawing one neither switches the backend nor
# registers a window, so a notebook's own plt.show() keeps working and nothing stays open; savefig renders it with
# the Agg canvas, and Jupyter shows it through its _repr_png_ (below) without any backend set up.

DPI = 150
"""Resolution of saved and embedded figures (dots per inch): `groklab plot --dpi`."""
PAPER = {
    "figure.dpi": 110,  # on screen
    "savefig.dpi": DPI,
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


class PaperFigure(Figure):
    """A matplotlib Figure that shows itself in Jupyter as a PNG, with no pyplot and no backend set up."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()


@contextmanager
def paper_style() -> Iterator[None]:
    """matplotlib settings for every groklab figure, while one is drawn (restored afterwards): artists read them
    when they are created, so a figure function runs inside it from its first axes to its last label."""
    with mpl.rc_context(PAPER):  # type: ignore[arg-type]  # its stub wants the rcParams keys as Literal types
        yield


def colormap(name: str, n: int | None = None) -> Colormap:
    """A named colormap (resampled to n colors), without pyplot."""
    cmap = mpl.colormaps[name]
    return cmap if n is None else cmap.resampled(n)


def figure(n_panels: int = 1, width: float = 3.4, height: float = 2.6) -> tuple[Figure, list[Axes]]:
    """A row of n panels, each width x height inches (a paper column is ~3.4 in)."""
    fig = PaperFigure(figsize=(width * n_panels, height), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)
    return fig, list(axes[0])


def figure_grid(n_panels: int, max_cols: int = 3, width: float = 3.0, height: float = 2.3) -> tuple[Figure, list[Axes]]:
    """n panels in rows of at most max_cols; unused cells are hidden."""
    cols = max(1, min(max_cols, n_panels))
    rows = -(-n_panels // cols)
    fig = PaperFigure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.axis("off")
    return fig, flat[:n_panels]


def log_steps(ax: Axes) -> None:
    """Log step axis that still shows step 0, labelled: linear from 0 to the first evaluation after it and log
    beyond, so the segment from step 0 to that evaluation is drawn to scale, not bent across decades of a log
    axis it has no points in. Call it once the lines are drawn."""
    firsts = [x[x > 0].min() for line in ax.get_lines() if ((x := np.asarray(line.get_xdata(), float)) > 0).any()]
    ax.set_xscale("symlog", linthresh=max(1.0, min(firsts, default=1.0)))
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
        cmap = colormap("viridis")
        return {v: cmap(0.9 * o / (len(distinct) - 1)) for v, o in zip(distinct, order)}
    cmap = colormap("tab10")
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
