"""Varma et al. 2023's circuit efficiency: how large the logits a network produces are for its parameter norm.

A memorizing and a generalizing circuit can both fit the training set; weight decay favours the one that
produces the larger logits per unit of parameter norm. Read on the run's training set (the examples it keeps,
when its training set shrank) at each evaluation:

    logit_scale = mean over training examples i of z_{i,y_i} - mean_j z_ij   (the true class above the mean logit)
    efficiency  = logit_scale / |theta|                                       (|theta|: the run's weight_norm)

The paper compares circuits by the logits they reach at a given norm; the ratio is that comparison for the
network as a whole, at whatever norm training has brought it to.
"""

from __future__ import annotations

import torch

from groklab.config import RunConfig
from groklab.losses import weighted_mean
from groklab.measures.probe import Probe
from groklab.measures.registry import register


def logit_scale(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over examples of the true class's logit above the example's mean logit: (run, n, C) -> (run,).

    >>> logits = torch.tensor([[[3.0, 0.0, 0.0], [1.0, 1.0, 4.0]]])  # means 1 and 2
    >>> logit_scale(logits, torch.tensor([[0, 2]]))  # (3 - 1 + 4 - 2) / 2
    tensor([2.])
    >>> logit_scale(logits, torch.tensor([[0, 0]]), weight=torch.tensor([[1.0, 0.0]]))  # the second is not kept
    tensor([2.])
    """
    above = logits.gather(2, y.unsqueeze(2)).squeeze(2) - logits.mean(dim=2)
    return above.mean(dim=1) if weight is None else weighted_mean(above, weight.to(above.dtype))


def _classifies(config: RunConfig) -> bool:
    return config.loss_kind != "template_mse"


@register(
    "efficiency",
    "logit scale on the training set (true class above the mean logit) and that scale per parameter norm",
    "logit_scale = mean_i (z_{i,y_i} - mean_j z_ij) over the (kept) training examples; efficiency = "
    "logit_scale / |theta|",
    "Varma et al. 2023 (circuit efficiency)",
    applies=_classifies,
    default=False,
)
def efficiency(probe: Probe) -> dict[str, torch.Tensor]:
    scale = logit_scale(probe.train_logits, probe.stacked["y_train"], probe.stacked.get("train_kept"))
    norm = torch.sqrt(sum(p.square().flatten(1).sum(dim=1) for p in probe.params.values()))  # type: ignore[arg-type]
    return {"logit_scale": scale, "efficiency": scale / norm}
