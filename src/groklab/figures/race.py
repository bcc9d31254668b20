"""The grokking race (docs/race.md): steps to the target per variant at its best setting, each seed a point."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from groklab.figures.registry import Stored, register
from groklab.figures.style import TEST, empty, figure
from groklab.store.reader import ExperimentResult

TARGET = ("test_acc", 0.99)
"""The race's target, unless the spec's leaderboard claim names another: 99% test accuracy."""


def _target(result: ExperimentResult) -> tuple[str, float]:
    for claim in result.spec.get("claims") or []:
        if isinstance(claim, dict) and claim.get("check") == "leaderboard":
            params = claim.get("params") or {}
            return str(params.get("column", TARGET[0])), float(params.get("level", TARGET[1]))
    return TARGET


def _has_leaderboard(stored: Stored) -> bool:
    claims = stored.result.spec.get("claims")
    return isinstance(claims, list) and any(isinstance(c, dict) and c.get("check") == "leaderboard" for c in claims)


@register("race", "steps to the target per variant at its best setting, each seed a point", needs=_has_leaderboard)
def race(result: ExperimentResult) -> Figure:
    """Variants fastest first (median); a seed that never got there is an open marker at its budget."""
    column, level = _target(result)
    frame = result.at_best_setting(column, level)
    if frame.empty:
        return empty("no finished runs")
    order = (frame.assign(late=frame["step"].fillna(np.inf)).groupby("variant")["late"].median()
             .sort_values(kind="stable").index.tolist())  # fmt: skip
    fig, (ax,) = figure(1, 4.6, 0.45 * len(order) + 1.2)
    for row, variant in enumerate(order):
        runs = frame[frame["variant"] == variant]
        jitter = np.linspace(-0.15, 0.15, len(runs)) if len(runs) > 1 else np.zeros(1)
        got = runs["step"].notna().to_numpy()
        ax.scatter(runs["step"][got], row + jitter[got], s=14, color=TEST, zorder=3)
        ax.scatter(runs["budget"][~got], row + jitter[~got], s=14, facecolors="none", edgecolors=TEST, zorder=3)
        median = runs["step"].fillna(np.inf).median()
        if np.isfinite(median):
            ax.plot([median, median], [row - 0.3, row + 0.3], color="black", lw=1.2)
    settings = [frame[frame["variant"] == v]["setting"].iloc[0] for v in order]
    ax.set_yticks(range(len(order)), [f"{v}\n{s}" if s else v for v, s in zip(order, settings)], fontsize=6)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: the minor labels collide
    ax.set_xlabel(f"steps to {column} >= {level:g} (open: not reached)")
    return fig
