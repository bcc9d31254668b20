"""Figures drawn from a stored experiment (matplotlib, Agg), in the papers' style.

    style.py     paper-sized panels, log step axis, colors per swept value
    curves.py    learning curves, measures over steps, sweeps and phase diagrams
    analysis.py  Fourier spectra, IPR histograms, periodic neurons, t-SNE, weight KDEs, pruning curves
    theory.py    Liu et al.'s effective theory: predicted vs trained accuracy, steps to the representation
    slingshot.py Thilak et al.'s slingshots: norm, loss and accuracy with onsets marked; count over eps
    sizes.py     Varma et al.'s ungrokking: final test accuracy and efficiency over the kept training fraction

`plot(result)` returns {name: Figure} for every figure that applies; `save_figures` writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from groklab.config import SpecError
from groklab.figures import analysis, curves, sizes, slingshot, theory
from groklab.figures.style import DPI, empty, paper_style
from groklab.store.reader import ExperimentResult, load

FIGURES: dict[str, tuple[str, Callable[[ExperimentResult], Figure]]] = {
    "curves": ("train/test loss and accuracy over steps, mean over seeds, events marked", curves.curves),
    "measures": ("the stored progress measures over steps, one panel each", curves.measures_overview),
    "sweep": ("generalization step over the sweep: a line (one key) or a phase diagram (two)", curves.sweep),
    "delay": ("grokking delay (generalized - memorized) over the sweep", lambda r: curves.sweep(r, "grokking_delay")),
    "phases": (
        "Doshi et al.'s phase of each run over the sweep (label corruption)",
        lambda r: curves.sweep(r, "doshi_phase"),
    ),  # fmt: skip
    "liu_phases": (
        "Liu et al.'s learning phase of each run over the sweep (comprehension, grokking, memorization, confusion)",
        lambda r: curves.sweep(r, "liu_phase"),
    ),  # fmt: skip
    "effective_theory": (
        "Liu et al.: predicted vs trained accuracy and steps to RQI > 0.95 over the sweep (Figs. 3-4)",
        theory.effective_theory,
    ),  # fmt: skip
    "slingshots": (
        "Thilak et al.: last-layer norm, train loss and test accuracy with slingshot onsets and generalization marked",
        slingshot.slingshots,
    ),  # fmt: skip
    "slingshot_count": (
        "Thilak et al.: slingshots per run and final test accuracy over the sweep",
        slingshot.slingshot_count,
    ),
    "ungrokking": (
        "Varma et al.: final test accuracy and efficiency over the kept training fraction, per variant",
        sizes.ungrokking,
    ),
    "fourier": ("Fourier power of embeddings and logits, key frequencies", analysis.fourier),
    "ipr": ("histograms of neuron IPR at several steps", analysis.ipr_histogram),
    "neurons": ("incoming weights of the largest neurons over the residues", analysis.neurons),
    "tsne": ("t-SNE of hidden representations at the stored steps", analysis.tsne),
    "kde": ("density of first-layer weights at the stored steps", analysis.weight_kde),
    "pruning": ("accuracy as low-IPR neurons are pruned", analysis.pruning),
    "batchnorm": ("each neuron's BatchNorm gain against its IPR, BatchNorm runs", analysis.batchnorm),
}
"""name -> (what it shows, function of the stored experiment)."""


def applicable(result: ExperimentResult) -> list[str]:
    """The figures this experiment has data for, in FIGURES order."""
    series = result.series(result.rows[0]["run_id"]) if result.rows else {}
    swept = bool(result.spec.get("sweep"))
    needs = {
        "sweep": swept,
        "delay": swept,
        "phases": swept and "doshi_phase" in result.runs and result.runs["doshi_phase"].notna().any(),
        "liu_phases": swept and "liu_phase" in result.runs and result.runs["liu_phase"].notna().any(),
        "effective_theory": swept and "predicted_acc" in result.metrics,
        "slingshots": "slingshot_steps" in result.runs and result.runs["slingshot_steps"].map(bool).any(),
        "slingshot_count": swept and "slingshot_steps" in result.runs,
        "ungrokking": "task.on_generalized.train_fraction" in result.runs and "variant" in result.runs,
        "fourier": "embedding_spectrum" in series,
        "ipr": "neuron_ipr" in series,
        "neurons": "task.modulus" in result.runs,
        "tsne": "representations" in series,
        "kde": "weight_sample" in series,
        "pruning": "prune_neurons" in series,
        "batchnorm": "batchnorm_gain_ipr" in result.runs and result.runs["batchnorm_gain_ipr"].notna().any(),
        "curves": bool(result.rows or result.progress),  # unfinished runs: their partial curves
    }
    return [name for name in FIGURES if needs.get(name, bool(result.rows))]


def plot(result: ExperimentResult | str | Path, what: list[str] | None = None) -> dict[str, Figure]:
    """{name: matplotlib Figure} for `what` (default: every applicable figure) of a stored experiment.

    Besides the names of FIGURES, `measure:COLUMN` draws any stored scalar measure over steps and
    `sweep:QUANTITY` any per-run quantity (a column of result.runs) over the sweep.
    """
    if not isinstance(result, ExperimentResult):
        result = load(result)
    figures = {}
    for name in what or applicable(result):
        kind, _, argument = name.partition(":")
        with paper_style():
            if name in FIGURES:
                figures[name] = FIGURES[name][1](result)
            elif kind == "measure" and argument in result.metrics.columns:
                drawn = curves.measure(result, argument)
                figures[name] = drawn or empty(f"{argument}: no values stored")
            elif kind == "sweep" and argument in result.runs.columns:
                figures[name] = curves.sweep(result, argument)
            else:
                allowed = f"{', '.join(FIGURES)}, measure:COLUMN (a metrics column), sweep:QUANTITY (a runs column)"
                raise SpecError(f"--what {name}: unknown figure; allowed: {allowed}")
    return figures


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
    folder = out or result.root / "figures"
    figures = plot(result, what)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        stem = name.replace(":", "-")
        path, partial = folder / f"{stem}.{fmt}", folder / f".{stem}.{fmt}.partial"
        fig.savefig(partial, format=fmt, dpi=dpi)
        partial.replace(path)  # a figure file is whole or absent
        paths.append(path)
    return paths


__all__ = ["DPI", "FIGURES", "applicable", "plot", "save_figures"]
