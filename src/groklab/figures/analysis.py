"""Figures of one run's inside: Fourier spectra, IPR histograms, periodic neurons, t-SNE, weight KDEs,
pruning curves. Each takes the stored experiment and a run id (default: the first run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from groklab.data import make_data, modular_table
from groklab.figures.registry import register, runs_with, series
from groklab.figures.style import TEST, TRAIN, colormap, empty, figure, figure_grid
from groklab.figures.tsne import tsne as embed_2d
from groklab.measures.probe import Probe
from groklab.store.reader import ExperimentResult


def _run(result: ExperimentResult, run_id: str | None) -> str | None:
    """The run a one-run figure shows: the one asked for, else the finished run that trained longest (the first of
    them), so that a figure over stored steps is not cut short by a run that stopped early."""
    if run_id or not result.rows:
        return run_id or None
    return str(max(result.rows, key=lambda row: row["steps"])["run_id"])


def _neurons_known(spec: dict) -> bool:
    """The model has a first hidden layer and it is known: a built-in network, or a user's module whose spec names
    model.neurons (a kernel machine has none)."""
    model = spec.get("model") or {}
    name = model.get("name", "mlp")
    return name in ("mlp", "transformer") or (name == "module" and model.get("neurons") is not None)


def _pick_steps(steps: np.ndarray, n: int = 4) -> list[int]:
    """Up to n indices spread over the stored steps, log-spaced (first, last, and between)."""
    if len(steps) <= n:
        return list(range(len(steps)))
    positions = np.unique(np.round(np.geomspace(1, len(steps), n)).astype(int) - 1)
    return positions.tolist()


@register("fourier", "Fourier power of embeddings and logits, key frequencies", needs=series("embedding_spectrum"))
def fourier(result: ExperimentResult, run_id: str | None = None) -> Figure:
    """Fourier power of the operand embeddings per frequency (final evaluation) and of the logits along
    cos/sin(w_k(a+b)), with the key frequencies marked (Nanda et al. Fig. 3; Gromov)."""
    run_id = _run(result, run_id)
    series = result.series(run_id) if run_id else {}
    if run_id is None or "embedding_spectrum" not in series:
        return empty("no Fourier spectra stored (modular tasks, measure embedding_fourier)")
    panels = [("embedding_spectrum", "embeddings")] + (
        [("logit_spectrum", "logits")] if "logit_spectrum" in series else []
    )
    if "key_frequencies" in series:  # the logits' top frequencies (restricted_excluded), or the configured ones
        keys, which = series["key_frequencies"][-1].astype(int), "key k"
    else:  # no logit measure (e.g. an MSE run): the embeddings' own top frequencies
        n = result.run_config(run_id).measures.restricted_excluded.n_key_frequencies
        keys, which = np.argsort(series["embedding_spectrum"][-1])[::-1][:n] + 1, f"top {n} embedding k"
    fig, axes = figure(len(panels), 3.6, 2.5)
    for ax, (name, what) in zip(axes, panels):
        spectrum = series[name][-1]
        k = np.arange(1, len(spectrum) + 1)
        ax.bar(k, spectrum / spectrum.sum(), color="grey", width=0.9)
        for key in keys:
            ax.bar(key, spectrum[key - 1] / spectrum.sum(), color=TEST, width=0.9)
        ax.set_xlabel("frequency k (w_k = 2 pi k / p)")
        ax.set_ylabel(f"share of the {what}' power")
        ax.set_title(f"{what} of {run_id} at step {int(series[name + '.steps'][-1])}; red: {which}", fontsize=8)
    return fig


@register("ipr", "histograms of neuron IPR at several steps", needs=series("neuron_ipr"))
def ipr_histogram(result: ExperimentResult, run_id: str | None = None) -> Figure:
    """Histograms of the neurons' IPR at a few evaluated steps (Gromov; Doshi et al.)."""
    run_id = _run(result, run_id)
    series = result.series(run_id) if run_id else {}
    if "neuron_ipr" not in series:
        return empty("no neuron IPR stored (modular tasks, measure neuron_ipr)")
    values, steps = series["neuron_ipr"], series["neuron_ipr.steps"]
    chosen = _pick_steps(steps)
    fig, axes = figure(len(chosen), 2.2, 2.1)
    bins = np.linspace(0, 1, 26).tolist()
    for ax, i in zip(axes, chosen):
        ax.hist(values[i], bins=bins, color=TRAIN)
        ax.set_title(f"step {int(steps[i])}")
        ax.set_xlabel("neuron IPR")
    axes[0].set_ylabel("neurons")
    return fig


@register(
    "neurons",
    "incoming weights of the largest neurons over the residues",
    needs=lambda stored: "task.modulus" in stored.result.runs and _neurons_known(stored.result.spec),
)
def neurons(result: ExperimentResult, run_id: str | None = None, count: int = 4) -> Figure:
    """How the largest-variance first-layer neurons respond to operand a (pre-activation averaged over
    b, final weights): Gromov's periodic neurons. For a one-hot MLP this is the neuron's W_in column."""
    run_id = _run(result, run_id)
    if run_id is None or "task.modulus" not in result.runs or not _neurons_known(result.spec):
        return empty("neuron responses over residues: modular tasks, and a module's model.neurons")
    model, params, buffers = result.model(run_id)
    config = result.run_config(run_id)
    pairs, _ = modular_table(config.task)  # type: ignore[arg-type]
    data = [make_data(config.task, config.seed)]
    probe = Probe(step=0, params=params, model=model, configs=[config], data=data, init_params=params, buffers=buffers)
    pre = probe.neuron_preactivations(torch.from_numpy(pairs)[None])[0].double()  # (n_pairs, N)
    p = config.task.modulus  # type: ignore[union-attr]
    a = torch.from_numpy(pairs[:, 0])
    response = torch.zeros(p, pre.shape[1], dtype=torch.float64).index_add_(0, a, pre)
    response /= torch.bincount(a, minlength=p).clamp_min(1)[:, None]
    largest = response.var(dim=0).argsort(descending=True)[:count].tolist()
    fig, axes = figure_grid(len(largest), 2, 3.0, 1.8)
    for ax, neuron in zip(axes, largest):
        ax.plot(np.arange(p), response[:, neuron].numpy(), marker=".", ms=3, lw=0.8, color=TRAIN)
        ax.set_title(f"neuron {neuron}")
        ax.set_xlabel("operand a")
        ax.set_ylabel("mean pre-activation")
    return fig


@register("tsne", "t-SNE of hidden representations at the stored steps", needs=series("representations"))
def tsne(result: ExperimentResult, run_id: str | None = None) -> Figure:
    """t-SNE of the stored test representations at each stored step, colored by the test label (seed 001 Fig. 2)."""
    run_id = _run(result, run_id)
    series = result.series(run_id) if run_id else {}
    if run_id is None or "representations" not in series:
        return empty("no representations stored (set measures.representations.steps)")
    reps, steps = series["representations"], series["representations.steps"]
    labels = result.data(run_id)["y_test"][: reps.shape[1]]
    chosen = _pick_steps(steps)
    fig, axes = figure(len(chosen), 2.3, 2.3)
    for ax, i in zip(axes, chosen):
        points = reps[i].reshape(reps.shape[1], -1).astype(np.float64)
        embedded = embed_2d(torch.as_tensor(points)).numpy()
        ax.scatter(embedded[:, 0], embedded[:, 1], c=labels, cmap="coolwarm" if labels.max() <= 1 else "hsv", s=5)
        ax.set_title(f"step {int(steps[i])}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    axes[0].set_ylabel("colored by test label")
    return fig


@register("kde", "density of first-layer weights at the stored steps", needs=series("weight_sample"))
def weight_kde(result: ExperimentResult, run_id: str | None = None) -> Figure:
    """Kernel density of the first layer's weights at the stored steps (seed 001 Fig. 3)."""
    run_id = _run(result, run_id)
    series = result.series(run_id) if run_id else {}
    if "weight_sample" not in series:
        return empty("no weight samples stored (set measures.representations.steps)")
    samples, steps = series["weight_sample"], series["weight_sample.steps"]
    fig, (ax,) = figure(1, 3.6, 2.5)
    grid = np.linspace(np.percentile(samples, 0.5), np.percentile(samples, 99.5), 300)
    for i, color in zip(range(len(steps)), _sequential(len(steps))):
        ax.plot(grid, _kde(samples[i], grid), color=color, label=f"step {int(steps[i])}")
    ax.set_xlabel("first-layer weight")
    ax.set_ylabel("density")
    ax.legend(frameon=False)
    return fig


@register("pruning", "accuracy as low-IPR neurons are pruned", needs=series("prune_neurons"))
def pruning(result: ExperimentResult, run_id: str | None = None) -> Figure:
    """Accuracy on clean and corrupted training examples and on the test set as neurons are pruned in
    order of increasing IPR (Doshi et al.)."""
    run_id = _run(result, run_id)
    series = result.series(run_id) if run_id else {}
    if "prune_neurons" not in series:
        return empty("no pruning curve stored (measure ipr_pruning)")
    fig, (ax,) = figure(1, 3.6, 2.5)
    x = series["prune_neurons"]
    ax.plot(x, series["prune_clean_acc"], color=TRAIN, label="train, clean labels")
    ax.plot(x, series["prune_corrupted_acc"], color="orange", label="train, corrupted labels (as given)")
    ax.plot(x, series["prune_test_acc"], color=TEST, label="test")
    ax.set_xlabel("neurons pruned (lowest IPR first)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(frameon=False)
    return fig


def _kde(sample: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density with Silverman's bandwidth."""
    points = torch.as_tensor(sample, dtype=torch.float64)
    bandwidth = 1.06 * float(points.std()) * len(points) ** (-1 / 5) or 1e-3
    z = (torch.as_tensor(grid)[:, None] - points[None, :]) / bandwidth
    return (torch.exp(-0.5 * z**2).mean(1) / (bandwidth * np.sqrt(2 * np.pi))).numpy()


def _sequential(n: int) -> list[tuple[float, ...]]:
    return [colormap("viridis")(0.9 * i / max(1, n - 1)) for i in range(n)]


@register(
    "batchnorm",
    "each neuron's BatchNorm gain against its IPR, BatchNorm runs",
    needs=runs_with("batchnorm_gain_ipr"),
)
def batchnorm(result: ExperimentResult, count: int = 4) -> Figure:
    """Each neuron's BatchNorm gain |gamma| / sigma against its IPR, for up to `count` BatchNorm runs
    (Doshi et al.: BatchNorm amplifies the periodic, generalizing neurons)."""
    runs = result.runs
    chosen = runs[runs.get("batchnorm_gain_ipr", pd.Series(dtype=float)).notna()].head(count)
    if chosen.empty:
        return empty("no BatchNorm run (measure batchnorm_gain)")
    fig, axes = figure_grid(len(chosen), 2, 3.0, 2.4)
    for ax, (_, row) in zip(axes, chosen.iterrows()):
        series = result.series(row["run_id"])
        ax.scatter(series["neuron_ipr"][-1], series["batchnorm_gain"], s=4, color=TRAIN, alpha=0.6)
        noise = f", noise {row['task.label_noise']:g}" if "task.label_noise" in row else ""
        ax.set_title(f"{row['run_id']}{noise}: rho = {row['batchnorm_gain_ipr']:.2f}", fontsize=9)
        ax.set_xlabel("neuron IPR (final)")
        ax.set_ylabel("gain |gamma| / sigma")
    return fig
