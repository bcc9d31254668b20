"""SGD (+momentum), Adam and AdamW over a stack of runs, each run with its own hyperparameters.

Each hyperparameter is a tensor of shape (run,), broadcast over the parameter's other axes, so one
fused update serves K runs with K learning rates, weight decays, betas and epsilons. The arithmetic
follows torch.optim (same order of operations), which the tests check run by run.
"""

from __future__ import annotations

import torch

from groklab.config import OptimizerConfig

HYPERPARAMETERS = ("lr", "weight_decay", "beta1", "beta2", "eps", "momentum", "warmup_steps")


def hyperparameters(
    configs: list[OptimizerConfig], device: torch.device, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """The per-run hyperparameters of a stack as (run,) tensors."""
    columns = {
        "lr": [c.lr for c in configs],
        "weight_decay": [c.weight_decay for c in configs],
        "beta1": [c.betas[0] for c in configs],
        "beta2": [c.betas[1] for c in configs],
        "eps": [c.eps for c in configs],
        "momentum": [c.momentum for c in configs],
        "warmup_steps": [float(c.warmup_steps) for c in configs],
    }
    return {name: torch.tensor(values, device=device, dtype=dtype) for name, values in columns.items()}


class StackOptimizer:
    """One optimizer for a stack of runs; `select` drops finished runs from its state."""

    def __init__(self, name: str, params: dict[str, torch.Tensor], hyper: dict[str, torch.Tensor]) -> None:
        self.name = name
        self.hyper = hyper
        self.state = {n: torch.zeros_like(p) for n, p in params.items()}  # momentum buffer / exp_avg
        if name in ("adam", "adamw"):
            self.state.update({f"{n}.exp_avg_sq": torch.zeros_like(p) for n, p in params.items()})
        self.max_warmup = int(hyper["warmup_steps"].max().item()) if len(hyper["lr"]) else 0

    def learning_rates(self, step: int) -> torch.Tensor:
        """(run,) learning rates at `step` (updates done so far): lr * min(1, step / warmup_steps)."""
        lr, warmup = self.hyper["lr"], self.hyper["warmup_steps"]
        if step >= self.max_warmup:
            return lr
        factor = torch.where(warmup > 0, (step / warmup.clamp(min=1)).clamp(max=1), torch.ones_like(warmup))
        return lr * factor

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], step: int) -> None:
        """Update every parameter in place; `step` counts the updates done before this one."""
        lr = self.learning_rates(step)
        h = self.hyper
        for name, p in params.items():
            grad = grads[name]
            shape = (-1,) + (1,) * (p.dim() - 1)  # broadcast (run,) over the parameter's axes
            lr_, wd = lr.view(shape), h["weight_decay"].view(shape)
            if self.name == "sgd":
                grad = grad + wd * p
                buffer = self.state[name]
                buffer.mul_(h["momentum"].view(shape)).add_(grad)
                p.sub_(lr_ * buffer)
                continue
            if self.name == "adamw":
                p.mul_(1 - lr_ * wd)
            else:
                grad = grad + wd * p
            beta1, beta2, eps = h["beta1"].view(shape), h["beta2"].view(shape), h["eps"].view(shape)
            exp_avg, exp_avg_sq = self.state[name], self.state[f"{name}.exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad * (1 - beta2))
            t = step + 1
            bias_correction1 = 1 - beta1**t
            bias_correction2_sqrt = (1 - beta2**t).sqrt()
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            p.sub_((lr_ / bias_correction1) * exp_avg / denom)

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the runs where `keep` (run,) is True."""
        self.hyper = {n: v[keep] for n, v in self.hyper.items()}
        self.state = {n: v[keep] for n, v in self.state.items()}
