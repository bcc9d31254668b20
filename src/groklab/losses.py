"""Per-run losses of a stack: each run's mean loss, so that summing them gives each run its own gradient."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def stablemax(logits: torch.Tensor) -> torch.Tensor:
    """Prieto et al. 2025's StableMax: s(z_i) / sum_j s(z_j), s(x) = x + 1 for x >= 0 and 1 / (1 - x) for x < 0.

    s is positive, increasing and only linear for large x, so no logit makes a probability exactly 1 in
    floating point as softmax's exp does (softmax collapse). The code's s adds 1e-30 to 1 - x, which changes no
    float64 value (1 - x >= 1).

    >>> stablemax(torch.tensor([[1.0, 0.0, -1.0]], dtype=torch.float64))  # s = 2, 1, 1/2
    tensor([[0.5714, 0.2857, 0.1429]], dtype=torch.float64)
    """
    s = torch.where(logits < 0, 1 / (1 - logits), logits + 1)
    return s / s.sum(dim=-1, keepdim=True)


def per_example_loss(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss of every example: logits (run, batch, classes), y (run, batch) -> (run, batch).

    template_mse: the logits are scores -mean_d (y_d - T_cd)^2 of a templates readout (models/mlp.py), so the
    mean squared error to the true class's template is minus the true class's score. stablemax: -log of the true
    class's StableMax probability, in float64 as Prieto et al. compute it. regression: the squared error of the
    one output against a real-valued y.
    """
    runs, batch, classes = logits.shape
    if kind == "regression":  # one output, a real-valued target
        return (logits[..., 0] - y).square()
    if kind == "template_mse":
        return -logits.gather(2, y.unsqueeze(2)).squeeze(2)
    if kind == "mse":
        # y == arange is F.one_hot without its bounds check, which reads y on the host (a captured step cannot).
        target = (y.unsqueeze(2) == torch.arange(classes, device=y.device)).to(logits.dtype)
        return (logits - target).square().mean(dim=2)
    if kind == "stablemax":
        return -stablemax(logits.to(torch.float64)).gather(2, y.unsqueeze(2)).squeeze(2).log()
    flat_logits, flat_y = logits.reshape(runs * batch, classes), y.reshape(-1)
    if kind == "hinge":
        losses = F.multi_margin_loss(flat_logits, flat_y, reduction="none")
    else:
        losses = F.cross_entropy(flat_logits, flat_y, reduction="none")
    return losses.view(runs, batch)


def per_run_loss(logits: torch.Tensor, y: torch.Tensor, kind: str, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean loss of each run: logits (run, batch, classes), y (run, batch) -> (run,); with a 0/1 `weight`
    (run, batch), the mean over each run's examples of weight 1 (a training set that shrank)."""
    losses = per_example_loss(logits, y, kind)
    return losses.mean(dim=1) if weight is None else weighted_mean(losses, weight.to(losses.dtype))


def weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum_j w_j v_j / sum_j w_j over the last axis.

    >>> weighted_mean(torch.tensor([[1.0, 2.0, 6.0]]), torch.tensor([[1.0, 0.0, 1.0]]))
    tensor([3.5000])
    """
    return (values * weight).sum(dim=-1) / weight.sum(dim=-1)
