"""Measures of the weights alone: norms, spectral norms, sparsity, large neurons, distance from init, and the size
of each update."""

from __future__ import annotations

import torch

from groklab.measures.probe import Probe
from groklab.measures.registry import register


def _sum_squares(params: dict[str, torch.Tensor], names: list[str] | None = None) -> torch.Tensor:
    names = list(params) if names is None else names
    return sum(params[n].square().flatten(1).sum(dim=1) for n in names)  # type: ignore[return-value]


@register(
    "weight_norms",
    "L2 norm of each parameter tensor and of the last layer (readout)",
    "norm.<name> = |W|_F for each parameter; last_layer_norm = |(W_out, b_out)| (MLP) or |(W_U, b_U)|",
    "Power et al. 2022; Thilak et al. 2022 (the slingshot's last-layer norm); seed 003",
)
def weight_norms(probe: Probe) -> dict[str, torch.Tensor]:
    out = {f"norm.{name}": p.flatten(1).norm(dim=1) for name, p in probe.params.items()}
    out["last_layer_norm"] = _sum_squares(probe.params, list(probe.model.readout)).sqrt()
    return out


@register(
    "spectral_norms",
    "largest singular value of each weight matrix (attention heads side by side)",
    "spectral.<name> = sigma_max(W), W as (fan_in, fan_out)",
    "seed 001 (Fig. 4)",
    default=False,
)
def spectral_norms(probe: Probe) -> dict[str, torch.Tensor]:
    return {f"spectral.{name}": torch.linalg.matrix_norm(W, ord=2) for name, W in probe.matrices().items()}


@register(
    "weight_sparsity",
    "fraction of all parameters with |w| below measures.weight_sparsity.threshold",
    "mean over every parameter entry of [|w| < threshold]",
    "seed 003",
)
def weight_sparsity(probe: Probe) -> dict[str, torch.Tensor]:
    threshold = probe.options.weight_sparsity.threshold
    small = sum((p.abs() < threshold).flatten(1).sum(dim=1) for p in probe.params.values())
    total = sum(p[0].numel() for p in probe.params.values())
    return {"weight_sparsity": torch.as_tensor(small) / total}


@register(
    "large_neurons",
    "number of first-layer hidden neurons whose weight norm is >= large_neurons.fraction x the largest",
    "|{i : n_i >= f max_j n_j}|, n_i = sqrt(|w_in,i|^2 + |w_out,i|^2) (incoming and outgoing weights)",
    "Merrill et al. 2023 (a sparse subnetwork emerges at generalization)",
    needs=("neurons",),
)
def large_neurons(probe: Probe) -> dict[str, torch.Tensor]:
    w_in, w_out = probe.neuron_weights()
    norms = (w_in.square().sum(-1) + w_out.square().sum(-1)).sqrt()  # (run, N)
    largest = norms.max(dim=1, keepdim=True).values
    count = (norms >= probe.options.large_neurons.fraction * largest).sum(dim=1)
    return {"large_neurons": count.to(norms.dtype), "neuron_norms": norms}


@register(
    "init_distance",
    "L2 distance of all parameters from their initial values",
    "|theta_t - theta_0|",
    "Liu et al. 2023 (Omnigrok); Kumar et al. 2023 (lazy vs rich)",
)
def init_distance(probe: Probe) -> dict[str, torch.Tensor]:
    delta = {n: probe.params[n] - probe.init_params[n] for n in probe.params}
    return {"init_distance": _sum_squares(delta).sqrt()}


@register(
    "update_norm",
    "L2 size of the weight update applied at each evaluated step",
    "|theta_{t+1} - theta_t|: the update of the step that follows the evaluation at t, measured by the optimizer "
    "as it steps (engine/optim.py)",
    "seed 003 (the weight-update size it lists to track)",
    when="update",
)
def update_norm(probe: Probe) -> dict[str, torch.Tensor]:
    assert probe.update_norm is not None  # an update measure runs only after a measured step
    return {"update_norm": probe.update_norm}
