"""Per-run losses of a stack: each run's mean loss, so that summing them gives each run its own gradient."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_run_loss(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss of each run: logits (run, batch, classes), y (run, batch) -> (run,).

    template_mse: the logits are scores -mean_d (y_d - T_cd)^2 of a templates readout (models/mlp.py), so the
    mean squared error to the true class's template is minus the true class's score.
    """
    runs, batch, classes = logits.shape
    if kind == "template_mse":
        return -logits.gather(2, y.unsqueeze(2)).squeeze(2).mean(dim=1)
    if kind == "mse":
        target = F.one_hot(y, classes).to(logits.dtype)
        return (logits - target).square().mean(dim=(1, 2))
    flat_logits, flat_y = logits.reshape(runs * batch, classes), y.reshape(-1)
    if kind == "hinge":
        losses = F.multi_margin_loss(flat_logits, flat_y, reduction="none")
    else:
        losses = F.cross_entropy(flat_logits, flat_y, reduction="none")
    return losses.view(runs, batch).mean(dim=1)
