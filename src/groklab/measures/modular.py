"""Fourier measures of modular-arithmetic runs (formulas in measures/fourier.py), MLP and transformer alike."""

from __future__ import annotations

import numpy as np
import torch

from groklab.config import RunConfig
from groklab.measures.fourier import gini, ipr, logit_components, power_spectrum, restricted_excluded, sum_index
from groklab.measures.probe import Probe, is_additive, is_modular, is_noisy
from groklab.measures.registry import register


@register(
    "embedding_fourier",
    "Fourier spectrum over Z_p of the operand embeddings (W_E, or the blocks of W_in), its Gini and IPR",
    "embedding_spectrum_k = sum over embedding dims (and operands) of P_k; embedding_gini = Gini(sqrt P_k); "
    "embedding_ipr = IPR(P)",
    "Nanda et al. 2023 (sparse Fourier embeddings, Gini); Gromov 2023 (periodic weights)",
    applies=is_modular,
    needs=("embedding",),
)
def embedding_fourier(probe: Probe) -> dict[str, torch.Tensor]:
    E_a, E_b = probe.operand_embeddings()  # (run, p, d)
    spectrum = power_spectrum(E_a, dim=1).sum(1)  # (run, d, K) summed over d -> (run, K)
    if E_b is not E_a:
        spectrum = spectrum + power_spectrum(E_b, dim=1).sum(1)
    return {
        "embedding_spectrum": spectrum,
        "embedding_gini": gini(spectrum.sqrt()),
        "embedding_ipr": ipr(spectrum),
    }


def neuron_spectra(probe: Probe) -> torch.Tensor:
    """Power spectrum of each first-layer neuron's response to a and to b, summed: (run, N, K).

    The response to a is the neuron's pre-activation averaged over b (and vice versa) on the full
    table. For a one-hot MLP the pre-activation is W_in[a] + W_in[p + b], so these are exactly the
    spectra of its input weights (Gromov; Doshi et al.); for a transformer they include attention.
    """
    p = probe.config.task.modulus  # type: ignore[union-attr]
    if probe.model.neurons_from_weights:
        E_a, E_b = probe.operand_embeddings()  # the same spectra, from the weights directly
        return power_spectrum(E_a, dim=1) + power_spectrum(E_b, dim=1)
    pairs = probe.table_pairs
    pre = probe.table_neurons  # (run, n_pairs, N)
    runs, _, N = pre.shape
    grid = torch.zeros(runs, p, p, N, dtype=pre.dtype, device=pre.device)
    count = torch.zeros(p, p, dtype=pre.dtype, device=pre.device)
    grid[:, pairs[:, 0], pairs[:, 1]] = pre
    count[pairs[:, 0], pairs[:, 1]] = 1
    response_a = grid.sum(2) / count.sum(1).clamp_min(1)[None, :, None]  # (run, p, N)
    response_b = grid.sum(1) / count.sum(0).clamp_min(1)[None, :, None]
    return power_spectrum(response_a, dim=1) + power_spectrum(response_b, dim=1)  # (run, N, K)


@register(
    "neuron_ipr",
    "inverse participation ratio of each first-layer neuron's Fourier spectrum; its mean and spread",
    "IPR_i = sum_k P_ik^2 / (sum_k P_ik)^2 over k = 1..floor(p/2) (1: one frequency; 2/(p-1): flat)",
    "Gromov 2023; Doshi et al. 2023 (memorizing neurons have low IPR)",
    applies=is_modular,
    needs=("neurons",),
)
def neuron_ipr(probe: Probe) -> dict[str, torch.Tensor]:
    values = ipr(neuron_spectra(probe))  # (run, N)
    return {
        "neuron_ipr": values,
        "neuron_ipr_mean": values.mean(dim=1),
        "neuron_ipr_median": values.median(dim=1).values,
    }


def key_frequencies(probe: Probe, power: torch.Tensor) -> torch.Tensor:
    """Key frequencies per run (run, n_keys): the configured list, or the top-n of the logit power."""
    fixed = probe.options.restricted_excluded.key_frequencies
    K = power.shape[1]
    if fixed:
        if max(fixed) > K:
            raise ValueError(f"measures.restricted_excluded.key_frequencies: {fixed} exceed floor(p/2) = {K}")
        return torch.tensor(fixed, device=power.device).expand(power.shape[0], -1)
    return power.topk(min(probe.options.restricted_excluded.n_key_frequencies, K), dim=1).indices + 1


@register(
    "restricted_excluded",
    "logit power along cos/sin(w_k(a+-b)), key frequencies, restricted loss (test) and excluded loss (train)",
    "logit_spectrum_k = sum_c (<L_c, u_cos,k>^2 + <L_c, u_sin,k>^2) with u the unit p*p-vectors "
    "cos/sin(w_k (a+-b)); restricted = loss(mean L + key components) on test; excluded = loss(L - key "
    "components) on train",
    "Nanda et al. 2023 (progress measures)",
    applies=is_additive,
    default=lambda config: config.train.loss == "cross_entropy",  # as the paper defines them; by name for MSE
)
def restricted_excluded_loss(probe: Probe) -> dict[str, torch.Tensor]:
    task = probe.config.task
    p, sign = task.modulus, (1 if task.operation == "add" else -1)  # type: ignore[union-attr]
    s = sum_index(probe.table_pairs, p, sign)
    logits = probe.table_logits.to(torch.float64)
    cos, sin = logit_components(logits, s, p)
    power = (cos.square() + sin.square()).sum(-1)  # (run, K)
    keys = key_frequencies(probe, power)
    train_rows, test_rows = probe.table_rows
    restricted, excluded = restricted_excluded(
        logits,
        s,
        p,
        keys,
        train_rows,
        probe.stacked["y_train"],
        test_rows,
        probe.stacked["y_test"],
        probe.config.train.loss,
    )
    dtype = probe.table_logits.dtype
    return {
        "logit_spectrum": power.to(dtype),
        "key_frequencies": keys.to(dtype),
        "restricted_loss": restricted.to(dtype),
        "excluded_loss": excluded.to(dtype),
    }


@register(
    "ipr_pruning",
    "accuracy on clean train / corrupted train / test after zeroing the k lowest-IPR neurons, k = 0..N",
    "neurons ordered by IPR ascending; at ipr_pruning.points values of k their outgoing weights are set to 0; "
    "prune_clean_acc, prune_corrupted_acc (w.r.t. the given labels), prune_test_acc",
    "Doshi et al. 2023 (pruning memorizing, low-IPR neurons removes memorization of corrupted labels)",
    when="final",
    applies=is_modular,
    default=is_noisy,
    needs=("neurons",),
)
def ipr_pruning(probe: Probe) -> list[dict[str, object]]:
    order = ipr(neuron_spectra(probe)).argsort(dim=1)  # (run, N): lowest IPR first
    N = order.shape[1]
    counts = torch.linspace(0, N, probe.options.ipr_pruning.points).round().long().tolist()
    corrupted = torch.stack([d.corrupted for d in probe.data]).to(probe.device)
    curves: dict[str, list[torch.Tensor]] = {"prune_clean_acc": [], "prune_corrupted_acc": [], "prune_test_acc": []}
    for k in counts:
        keep = torch.ones(probe.runs, N, dtype=order.dtype, device=probe.device)
        keep.scatter_(1, order[:, :k], 0)
        params = probe.model.silence_neurons(probe.params, keep)
        train_hit = probe.forward(probe.stacked["x_train"], params).argmax(-1) == probe.stacked["y_train"]
        test_hit = probe.forward(probe.stacked["x_test"], params).argmax(-1) == probe.stacked["y_test"]
        curves["prune_clean_acc"].append((train_hit & ~corrupted).sum(1) / (~corrupted).sum(1).clamp_min(1))
        curves["prune_corrupted_acc"].append((train_hit & corrupted).sum(1) / corrupted.sum(1).clamp_min(1))
        curves["prune_test_acc"].append(test_hit.double().mean(1))
    stacked = {n: torch.stack(v, dim=1).cpu().numpy() for n, v in curves.items()}  # (run, points)
    return [{"prune_neurons": np.array(counts), **{n: v[r] for n, v in stacked.items()}} for r in range(probe.runs)]


def has_batchnorm(config: RunConfig) -> bool:
    """An MLP with BatchNorm after its hidden layers (model.batchnorm)."""
    return config.model.name == "mlp" and config.model.batchnorm


def _modular_batchnorm(config: RunConfig) -> bool:
    return is_modular(config) and has_batchnorm(config)


@register(
    "batchnorm_gain",
    "BatchNorm's effective gain on each first-layer neuron, and its rank correlation with the neuron's IPR",
    "gain_i = |gamma_i| / sqrt(running_var_i + 1e-5) (how much BatchNorm scales neuron i's output); "
    "batchnorm_gain_ipr = Spearman rho(gain, IPR) over the neurons (> 0: periodic neurons amplified)",
    "Doshi et al. 2023 (BatchNorm de-amplifies memorizing neurons and amplifies generalizing ones)",
    when="final",
    applies=_modular_batchnorm,
    default=_modular_batchnorm,
)
def batchnorm_gain(probe: Probe) -> list[dict[str, object]]:
    gain = probe.params["gamma_in"].abs() / (probe.buffers["running_var_in"] + 1e-5).sqrt()  # (run, N)
    rho = spearman(gain, ipr(neuron_spectra(probe)))
    return [{"batchnorm_gain": gain[r].cpu().numpy(), "batchnorm_gain_ipr": float(rho[r])} for r in range(probe.runs)]


def spearman(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation along the last axis: the Pearson correlation of the ranks (no tie correction).

    >>> spearman(torch.tensor([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]]), torch.tensor([[10.0, 20.0, 40.0]] * 2))
    tensor([ 1.0000, -0.5000], dtype=torch.float64)
    """
    ranks = [t.argsort(dim=-1).argsort(dim=-1).double() for t in (x, y)]
    a, b = (r - r.mean(dim=-1, keepdim=True) for r in ranks)
    return (a * b).sum(-1) / (a.square().sum(-1) * b.square().sum(-1)).sqrt()
