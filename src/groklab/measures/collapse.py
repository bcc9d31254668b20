"""Prieto et al. 2025's softmax collapse: when a logit gap is large enough, the softmax of a training example is
exactly one-hot in floating point, its loss exactly zero and its gradient exactly zero, and learning stops.

Read, as their logger.py does, on the full training set at each evaluation:

    softmax_collapse  = mean over training examples of [sum_j exp(z_j - max z) == 1], in the loss's dtype
                        (float32, or float64 with train.loss_dtype: float64): every other class underflows;
    zero_loss_terms   = mean over training examples of [loss_i == 0], the run's own loss in its own dtype;
    logit_norm        = mean over training examples of |z|_2 (the logits grow as the weights scale up along
                        the naive loss minimization direction).
"""

from __future__ import annotations

import torch

from groklab.config import RunConfig
from groklab.losses import per_example_loss
from groklab.measures.probe import Probe
from groklab.measures.registry import register


def _classifies(config: RunConfig) -> bool:
    return config.loss_kind in ("cross_entropy", "stablemax", "hinge")


def softmax_collapsed(logits: torch.Tensor) -> torch.Tensor:
    """Per example, whether the softmax of `logits` (..., classes) is exactly one-hot in their dtype: the other
    classes' exp(z_j - max z) add nothing to 1, which takes a gap of ~17 in float32 and ~37 in float64.

    >>> softmax_collapsed(torch.tensor([[20.0, 0.0, 0.0], [5.0, 0.0, 0.0]])).tolist()  # 1 + 2e-9 == 1 in float32
    [True, False]
    >>> softmax_collapsed(torch.tensor([[20.0, 0.0, 0.0]], dtype=torch.float64)).tolist()  # not in float64
    [False]
    """
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    return shifted.exp().sum(dim=-1) == 1


@register(
    "softmax_collapse",
    "share of training examples whose softmax is exactly one-hot, whose loss is exactly 0; mean logit norm",
    "softmax_collapse = mean_i [sum_j exp(z_ij - max_j z_ij) == 1] in the loss dtype; zero_loss_terms = "
    "mean_i [loss_i == 0]; logit_norm = mean_i |z_i|",
    "Prieto et al. 2025 (logger.py: softmax_collapse, zero_terms)",
    applies=_classifies,
    default=False,
)
def softmax_collapse(probe: Probe) -> dict[str, torch.Tensor]:
    config, logits, y = probe.config, probe.train_logits, probe.stacked["y_train"]
    loss_dtype = torch.float64 if config.train.loss_dtype == "float64" else logits.dtype
    losses = per_example_loss(logits.to(loss_dtype), y, config.loss_kind)
    return {
        "softmax_collapse": softmax_collapsed(logits.to(loss_dtype)).to(logits.dtype).mean(dim=1),
        "zero_loss_terms": (losses == 0).to(logits.dtype).mean(dim=1),
        "logit_norm": logits.norm(dim=-1).mean(dim=1),
    }
