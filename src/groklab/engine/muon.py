"""Muon over a stack of runs (Jordan et al. 2024, KellerJordan/Muon; torch.optim.Muon), each run with its own lr,
weight decay and momentum, the Newton-Schulz iteration batched over the run axis: one chain of batched matmuls for
the stack, not a loop over runs.

For a weight matrix W (fan_in x fan_out, as Model.matrices presents it) with gradient G, per run:

    B <- B + (1 - mu) (G - B)                      the momentum buffer (torch's lerp form)
    U  = G + mu (B - G)  (nesterov)  or  B
    O  = NS_5(U^T)^T                                 U^T is torch's (out, in) layout: the reference's orientation
    W <- W (1 - lr wd) - adjust(lr) O

NS_k is k steps of the quintic X <- a X + (b A + c A^2) X, A = X X^T, (a, b, c) = (3.4445, -4.7750, 2.0315),
from X = U / |U|_F in bfloat16, wide side last (torch.optim._muon._zeropower_via_newtonschulz). It maps U's
singular values to ~[0.7, 1.2]: an approximate U V^T. adjust(lr) = lr sqrt(max(1, fan_out / fan_in)) (original)
or 0.2 lr sqrt(max(fan_in, fan_out)) (match_rms_adamw). As the reference prescribes, Muon trains the hidden
layers' matrices only: the embeddings (Model.embeddings), the readout and every other parameter train with AdamW
(engine/optim.py) at optimizer.lr, .weight_decay, .betas and .eps. Pinned run by run to torch.optim.Muon and
torch.optim.AdamW in tests/unit/test_muon.py.
"""

from __future__ import annotations

import math

import torch

from groklab.config import OptimizerConfig
from groklab.engine.gradients import Step, grokfast_state
from groklab.engine.optim import StackOptimizer

COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""The quintic's (a, b, c): the reference's, chosen to maximize the slope at zero."""
EPS = 1e-7
"""The Frobenius norm's floor before the iteration (the reference's)."""


def orthogonalized(U: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """NS_steps of each run's matrix U (run, A, B), in bfloat16 as the reference computes it.

    >>> U = torch.tensor([[[3.0, 0.0], [0.0, 0.5]]])  # singular values 3 and 0.5 (a ratio of 6) go to 0.7 and 1
    >>> orthogonalized(U).float().diagonal(dim1=1, dim2=2).round(decimals=1)
    tensor([[0.7000, 1.0000]])
    """
    X = U.bfloat16()
    tall = X.size(1) > X.size(2)
    if tall:  # the Gram matrix of the short side: A x A with A <= B
        X = X.transpose(1, 2)
    X = X / torch.linalg.vector_norm(X, dim=(1, 2), keepdim=True).clamp(min=EPS)
    a, b, c = COEFFICIENTS
    for _ in range(steps):
        A = X @ X.transpose(1, 2)
        X = torch.baddbmm(X, torch.baddbmm(A, A, A, beta=b, alpha=c), X, beta=a)
    return X.transpose(1, 2) if tall else X


def lr_scale(fan_in: int, fan_out: int, rule: str) -> float:
    """adjust(lr) / lr for a fan_in x fan_out matrix.

    >>> lr_scale(128, 512, "original"), lr_scale(512, 128, "original"), lr_scale(128, 512, "match_rms_adamw")
    (2.0, 1.0, 4.525483399593905)
    """
    if rule == "original":
        return math.sqrt(max(1.0, fan_out / fan_in))
    if rule == "match_rms_adamw":
        return 0.2 * math.sqrt(max(fan_in, fan_out))
    return 1.0


def muon_columns(configs: list[OptimizerConfig], like: torch.Tensor) -> dict[str, torch.Tensor]:
    """Muon's per-run hyperparameters as (run,) tensors beside engine/optim.py's columns (switched and selected
    with them): its lr (optimizer.lr where muon.lr is null), weight decay, momentum, and 1 - momentum."""
    columns = {
        "muon_lr": [c.lr if c.muon.lr is None else c.muon.lr for c in configs],
        "muon_weight_decay": [c.weight_decay if c.muon.weight_decay is None else c.muon.weight_decay for c in configs],
        "muon_momentum": [c.muon.momentum for c in configs],
        # 1 - mu in double, then rounded: what torch.optim.Muon's lerp weight is (float32(1 - 0.95) = 0.05, while
        # 1 - float32(0.95) = 0.050000012); the bfloat16 iteration turns such an ulp into a different rounding.
        "muon_dampening": [1 - c.muon.momentum for c in configs],
    }
    return {name: torch.tensor(values, device=like.device, dtype=like.dtype) for name, values in columns.items()}


class MuonOptimizer(StackOptimizer):
    """Muon for the matrices `layout` names, AdamW for the other parameters (see the module docstring)."""

    def __init__(
        self,
        configs: list[OptimizerConfig],
        params: dict[str, torch.Tensor],
        hyper: dict[str, torch.Tensor],
        layout: dict[str, torch.Tensor],
        grokfast_window: int = 100,
    ) -> None:
        others = {n: p for n, p in params.items() if n not in layout}
        super().__init__("adamw", others, hyper | muon_columns(configs, hyper["lr"]), grokfast_window)
        self.filter_state = grokfast_state(params, self.grokfast_ema, self.grokfast_window)  # every parameter's
        self.layout = layout
        """Parameter name -> (fan_in, fan_out) indices of its matrix's entries into one run's flattened parameter."""
        self.state.update({f"{n}.muon_buffer": torch.zeros_like(params[n]) for n in layout})
        muon = configs[0].muon  # what runs of a stack share (plan.PER_RUN_KEYS has the rest)
        self.nesterov, self.ns_steps, self.adjust_lr = muon.nesterov, muon.ns_steps, muon.adjust_lr

    def _rule(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], step: Step) -> None:
        super()._rule({n: p for n, p in params.items() if n not in self.layout}, grads, step)
        h = self.hyper
        lr = self.warmed_up(h["muon_lr"], step)  # (run,)
        for name, index in self.layout.items():
            p, grad, buffer = params[name], grads[name], self.state[f"{name}.muon_buffer"]
            shape = (-1,) + (1,) * (p.dim() - 1)
            buffer.lerp_(grad, h["muon_dampening"].view(shape))
            update = grad.lerp(buffer, h["muon_momentum"].view(shape)) if self.nesterov else buffer
            matrix = update.flatten(1)[:, index.flatten()].view(-1, *index.shape)  # (run, fan_in, fan_out)
            O = orthogonalized(matrix.transpose(1, 2), self.ns_steps).transpose(1, 2)
            step_ = torch.empty(p.shape[0], index.numel(), dtype=O.dtype, device=O.device)
            step_[:, index.flatten()] = O.flatten(1)
            p.mul_((1 - lr * h["muon_weight_decay"]).view(shape))
            scale = lr_scale(index.shape[0], index.shape[1], self.adjust_lr)
            p.sub_((lr * scale).view(shape) * step_.view(p.shape))


def muon_layout(matrices: dict[str, torch.Tensor], skip: set[str]) -> dict[str, torch.Tensor]:
    """The index maps of the matrices Muon trains, from Model.matrices applied to index tensors (run axis 1):
    every matrix but those in `skip` (the embeddings and the readout)."""
    return {name: m[0] for name, m in matrices.items() if name not in skip}
