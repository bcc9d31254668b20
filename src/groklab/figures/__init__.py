"""Figures drawn from a stored experiment (matplotlib, Agg), in the papers' style.

    style.py     paper-sized panels, log step axis, colors per swept value
    curves.py    learning curves, measures over steps, sweeps and phase diagrams
    analysis.py  Fourier spectra, IPR histograms, periodic neurons, t-SNE, weight KDEs, pruning curves
    theory.py    Liu et al.'s effective theory: predicted vs trained accuracy, steps to the representation
    slingshot.py Thilak et al.'s slingshots: norm, loss and accuracy with onsets marked; count over eps
    sizes.py     Varma et al.'s ungrokking: final test accuracy and efficiency over the kept training fraction
    race.py      the grokking race: steps to the target per variant at its best setting
    spectra.py   ranks and spectra over steps, a layer's ESD with its power law, a kernel machine's features

    registry.py  FIGURES: each figure registered where it is defined, with what it needs (@register)

`plot(result)` returns {name: Figure} for every figure that applies; `save_figures` writes them.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

from matplotlib.figure import Figure

from groklab.config import SpecError
from groklab.files import atomic_write
from groklab.plugins import PluginWarning, described, load_plugins

# The figures register as their modules are imported: this order is the report's.
# isort: off
from groklab.figures import curves  # noqa: F401
from groklab.figures import theory  # noqa: F401
from groklab.figures import slingshot  # noqa: F401
from groklab.figures import sizes  # noqa: F401
from groklab.figures import analysis  # noqa: F401
from groklab.figures import race  # noqa: F401
from groklab.figures import spectra  # noqa: F401

# isort: on
from groklab.figures.registry import FIGURES, FigureKind, Stored
from groklab.figures.style import DPI, empty, paper_style
from groklab.store.layout import FIGURES_DIR, directory
from groklab.store.reader import ExperimentResult, load


def applicable(result: ExperimentResult) -> list[str]:
    """The figures this experiment has data for, in FIGURES order (the plugins' after the built-ins)."""
    load_plugins()
    stored = Stored(result)
    return [name for name, kind in FIGURES.items() if _has_what_it_needs(kind, stored)]


def _has_what_it_needs(kind: FigureKind, stored: Stored) -> bool:
    if kind.package == "groklab":
        return kind.needs(stored)
    try:
        return bool(kind.needs(stored))
    except Exception as error:  # a plugin's bug: its figure is left out, with a line saying so
        warnings.warn(f"figure {kind.name} ({kind.package}) raised {described(error)}; left out", PluginWarning, 3)
        return False


def plot(result: ExperimentResult | str | Path, what: list[str] | None = None) -> dict[str, Figure]:
    """{name: matplotlib Figure} for `what` (default: every applicable figure) of a stored experiment.

    Besides the names of FIGURES, `measure:COLUMN` draws any stored scalar measure over steps and
    `sweep:QUANTITY` any per-run quantity (a column of result.runs) over the sweep.
    """
    load_plugins()  # their figures join FIGURES
    if not isinstance(result, ExperimentResult):
        result = load(result)
    figures = {}
    for name in what or applicable(result):
        kind, _, argument = name.partition(":")
        with paper_style():
            if name in FIGURES and FIGURES[name].package != "groklab":
                if (drawn := _plugin_figure(FIGURES[name], result)) is not None:
                    figures[name] = drawn
            elif name in FIGURES:
                figures[name] = FIGURES[name].draw(result)
            elif kind == "measure" and argument in result.metrics.columns:
                drawn = curves.measure(result, argument)
                figures[name] = drawn or empty(f"{argument}: no values stored")
            elif kind == "sweep" and argument in result.runs.columns:
                figures[name] = curves.sweep(result, argument)
            else:
                allowed = f"{', '.join(FIGURES)}, measure:COLUMN (a metrics column), sweep:QUANTITY (a runs column)"
                raise SpecError(f"--what {name}: unknown figure; allowed: {allowed}")
    return figures


def _plugin_figure(kind: FigureKind, result: ExperimentResult) -> Figure | None:
    """A plugin's figure, or None with a one-line warning if drawing it raised: a plugin's bug never costs the
    built-in figures."""
    try:
        return kind.draw(result)
    except Exception as error:
        warnings.warn(f"figure {kind.name} ({kind.package}) raised {described(error)}; left out", PluginWarning, 3)
        return None


def save_figures(
    result: ExperimentResult | str | Path,
    what: list[str] | None = None,
    fmt: str = "png",
    out: Path | None = None,
    dpi: int = DPI,
) -> list[Path]:
    """Write the figures to DIR/figures/NAME.FMT (or `out`) at `dpi` dots per inch; returns the paths."""
    if fmt not in ("png", "svg", "pdf"):
        raise SpecError(f"--format {fmt}: not a figure format; allowed: png, svg, pdf")
    if not 20 <= dpi <= 1200:
        raise SpecError(f"--dpi {dpi}: out of range; allowed: 20 to 1200")
    if not isinstance(result, ExperimentResult):
        result = load(result)
    figures = plot(result, what)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    folder = out or directory(result.root, FIGURES_DIR)  # (never through a link)
    paths = []
    for name, fig in figures.items():
        path = folder / f"{name.replace(':', '-')}.{fmt}"
        atomic_write(path, functools.partial(fig.savefig, format=fmt, dpi=dpi))  # whole or absent, never via a link
        paths.append(path)
    return paths


__all__ = ["DPI", "FIGURES", "applicable", "plot", "save_figures"]
