"""Ranks and spectra beside the curves: the features' and weights' ranks over steps with the events marked, a
layer's eigenvalue spectrum with its fitted power law, and a kernel machine's feature matrix over its iterations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from groklab.figures.registry import Stored, register
from groklab.figures.style import TEST, TRAIN, colormap, empty, figure, figure_grid, log_steps
from groklab.measures.htsr import power_law_fit
from groklab.store.reader import ExperimentResult

FAMILIES = ("feature_rank.", "effective_rank.", "spectral_entropy.", "htsr_alpha.", "correlation_traps.")
"""The column prefixes drawn by `ranks`, a panel each (measures/spectra.py, measures/htsr.py)."""


def _families(stored: Stored) -> bool:
    return any(c.startswith(FAMILIES) for c in stored.result.metrics.columns)


@register("ranks", "feature rank per layer, effective ranks, entropies and alphas over steps, events marked",
          needs=_families)  # fmt: skip
def ranks(result: ExperimentResult) -> Figure:
    """One panel per family of spectral measures, a line per layer or matrix (mean over runs); the median run's
    memorization (train, dashed) and generalization (test, dotted) steps marked."""
    metrics = result.metrics
    families = [f for f in FAMILIES if any(c.startswith(f) for c in metrics.columns)]
    fig, axes = figure_grid(len(families), max_cols=3, width=3.2, height=2.4)
    events = {k: _median_step(result, k) for k in ("memorized_step", "generalized_step")}
    for ax, family in zip(axes, families):
        columns = [c for c in metrics.columns if c.startswith(family) and metrics[c].notna().any()]
        cmap = colormap("viridis", max(len(columns), 2))
        for i, column in enumerate(columns):
            curve = metrics.dropna(subset=[column]).groupby("step")[column].mean()
            ax.plot(curve.index, curve.to_numpy(), color=cmap(i), lw=1, label=column[len(family) :])
        for key, color, style in (("memorized_step", TRAIN, "--"), ("generalized_step", TEST, ":")):
            if np.isfinite(events.get(key, np.nan)):
                ax.axvline(events[key], color=color, ls=style, lw=0.8)
        ax.set_title(family.rstrip("."), fontsize=8)
        log_steps(ax)
        if len(columns) <= 6:
            ax.legend(fontsize=5, frameon=False)
    return fig


def _median_step(result: ExperimentResult, column: str) -> float:
    """The median run's step of an event (NaN when no run has it)."""
    if column not in result.runs:
        return float("nan")
    return float(pd.to_numeric(result.runs[column], errors="coerce").astype(float).median())


def _esd_names(stored: Stored) -> list[str]:
    return [k for k in stored.series if k.startswith("esd.") and not k.endswith(".steps")]


@register("esd", "a weight matrix's eigenvalue spectrum at three steps, with its fitted power-law tail",
          needs=lambda stored: bool(_esd_names(stored)))  # fmt: skip
def esd(result: ExperimentResult, matrix: str | None = None) -> Figure:
    """The complementary CDF of lambda = s^2 on log axes, at the first step, the median memorization step and the
    last; the power law WeightWatcher's fit picks (x_min, alpha) drawn over its tail. Default matrix: the one with
    the most eigenvalues."""
    if not result.rows:
        return empty("no finished runs")
    series = result.series(result.rows[0]["run_id"])
    names = [k for k in series if k.startswith("esd.") and not k.endswith(".steps")]
    if not names:
        return empty("no stored spectra (measure htsr_alpha)")
    name = f"esd.{matrix}" if matrix is not None and f"esd.{matrix}" in series else max(
        names, key=lambda k: series[k].shape[-1])  # fmt: skip
    spectra, steps = series[name], series[f"{name}.steps"]
    memorized = _median_step(result, "memorized_step")
    chosen = sorted(
        {0, len(steps) - 1} | ({int(np.searchsorted(steps, memorized))} if np.isfinite(memorized) else set())
    )
    fig, (ax,) = figure(1, 3.6, 2.8)
    cmap = colormap("viridis", max(len(chosen), 2))
    for color, i in enumerate(chosen):
        evals = np.sort(spectra[i])[::-1]
        evals = evals[evals > 0]
        ccdf = np.arange(1, len(evals) + 1) / len(evals)
        ax.loglog(evals, ccdf, ".", ms=2, color=cmap(color), label=f"step {int(steps[i])}")
        alpha, x_min = (float(v) for v in power_law_fit(torch.from_numpy(evals.copy())[None]))
        if np.isfinite(alpha):
            tail = evals[evals >= x_min]
            share = len(tail) / len(evals)  # the CCDF at x_min: the fit covers that share of the eigenvalues
            ax.loglog(tail, share * (tail / x_min) ** (1 - alpha), color=cmap(color), lw=1, alpha=0.8,
                      label=f"alpha {alpha:.2f}")  # fmt: skip
    ax.set_xlabel(f"eigenvalue of W^T W ({name[4:]})")
    ax.set_ylabel("P(lambda >= x)")
    ax.legend(fontsize=6, frameon=False)
    return fig


def _has_feature_matrix(stored: Stored) -> bool:
    result = stored.result
    return (result.spec.get("model") or {}).get("name") == "rfm" and bool(result.rows) and bool(
        result.snapshot_steps(result.rows[0]["run_id"]))  # fmt: skip


@register("rfm_features", "the kernel machine's feature matrix M at its stored iterations (diagonal removed)",
          needs=_has_feature_matrix)  # fmt: skip
def rfm_features(result: ExperimentResult) -> Figure:
    """M - diag(M) of the first run at up to four of measures.snapshot_steps, as their code plots it: on modular
    addition the off-diagonal blocks turn circulant (stripes along the diagonals) as test accuracy rises. Steps
    where M is still the identity (before the first AGOP) are left out when later ones are stored."""
    run_id = result.rows[0]["run_id"]
    stored = result.snapshot_steps(run_id)
    steps = [s for s in stored if _off_diagonal(result.weights(run_id, s)["M"]).any()] or stored
    chosen = [steps[int(i)] for i in np.unique(np.linspace(0, len(steps) - 1, min(4, len(steps))).round())]
    fig, axes = figure(len(chosen), 2.4, 2.5)
    accuracy = result.metrics.set_index(["run_id", "step"])["test_acc"]
    for ax, step in zip(axes, chosen):
        off = _off_diagonal(result.weights(run_id, step)["M"].double()).numpy()
        limit = float(np.abs(off).max()) or 1.0
        ax.imshow(off, cmap="RdBu_r", vmin=-limit, vmax=limit)
        acc = accuracy.get((run_id, step), np.nan)
        ax.set_title(f"step {step}: test acc {acc:.2f}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def _off_diagonal(M: torch.Tensor) -> torch.Tensor:
    """M with its diagonal set to 0."""
    return M - torch.diag(torch.diag(M))
