"""The figure registry: each figure's name, what it shows, what it needs of a stored experiment, and how it is
drawn, declared where it is defined:

    @register("ipr", "histograms of neuron IPR at several steps", needs=series("neuron_ipr"))
    def ipr_histogram(result: ExperimentResult) -> Figure: ...

`needs` is a predicate on Stored (what an experiment holds, read once); the predicates below name the usual ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import numpy as np
from matplotlib.figure import Figure

from groklab.plugins import package_of
from groklab.store.reader import ExperimentResult


class Stored:
    """What a stored experiment holds, for deciding which figures it can draw (each file read at most once)."""

    def __init__(self, result: ExperimentResult) -> None:
        self.result = result

    @cached_property
    def series(self) -> dict[str, np.ndarray]:
        """The first finished run's vector measures (the runs of an experiment store the same ones)."""
        return self.result.series(self.result.rows[0]["run_id"]) if self.result.rows else {}

    @property
    def swept(self) -> bool:
        return bool(self.result.spec.get("sweep"))

    def has(self, name: str) -> bool:
        """Whether result.runs has this column with some value in it."""
        runs = self.result.runs
        return name in runs and bool(runs[name].notna().any())


Needs = Callable[[Stored], bool]


@dataclass(frozen=True)
class FigureKind:
    """One registered figure."""

    name: str
    summary: str
    """What it shows (the report's caption, `groklab plot` and docs/measures.md)."""
    draw: Callable[[ExperimentResult], Figure]
    needs: Needs
    """Whether an experiment has what the figure is drawn from."""

    @property
    def package(self) -> str:
        """The installed package that registered it (a plugin's, or groklab)."""
        return package_of(self.draw.__module__)


FIGURES: dict[str, FigureKind] = {}
"""name -> figure, in the order the report shows them."""


def finished_runs(stored: Stored) -> bool:
    """The default need: some run finished."""
    return bool(stored.result.rows)


Draw = TypeVar("Draw", bound=Callable[..., Figure])


def register(name: str, summary: str, needs: Needs = finished_runs) -> Callable[[Draw], Draw]:
    """Decorator: add a figure function (of the stored experiment, its other arguments optional) to FIGURES."""

    def add(draw: Draw) -> Draw:
        FIGURES[name] = FigureKind(name, summary, draw, needs)
        return draw

    return add


def figure(name: str, summary: str, needs: Needs = finished_runs) -> Callable[[Draw], Draw]:
    """Decorator (public: `groklab.figure`): add a figure of your own. `draw(result)` returns a matplotlib Figure of a
    stored experiment (an ExperimentResult: its runs, metrics and series); `needs(stored)` says whether an
    experiment has what it is drawn from (default: some run finished; e.g. `lambda stored: stored.has("my_column")`).
    `groklab plot` and the report draw it after the built-ins, naming its package."""
    return register(name, summary, needs)


def swept(stored: Stored) -> bool:
    """The spec sweeps some key."""
    return stored.swept


def series(name: str) -> Needs:
    """The runs stored the vector measure `name`."""
    return lambda stored: name in stored.series


def runs_with(name: str, over_sweep: bool = False) -> Needs:
    """result.runs has a column `name` with some value (and, with over_sweep, the spec sweeps)."""
    return lambda stored: (stored.swept or not over_sweep) and stored.has(name)
