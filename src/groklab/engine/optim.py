"""SGD (+momentum), Adam, AdamW and RMSProp over a stack of runs, each run with its own hyperparameters.

Each hyperparameter is a tensor of shape (run,), broadcast over the parameter's other axes, so one
update serves K runs with K learning rates, weight decays, betas and epsilons. The arithmetic is
torch.optim's (the tests check it run by run); terms that are zero for every run are skipped, and
per-step scalars (warmup, bias corrections) are computed once per step, not once per parameter.
"""

from __future__ import annotations

import torch

from groklab.config import OptimizerConfig


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
        "alpha": [c.alpha for c in configs],
        "warmup_steps": [float(c.warmup_steps) for c in configs],
    }
    return {name: torch.tensor(values, device=device, dtype=dtype) for name, values in columns.items()}


class StackOptimizer:
    """One optimizer for a stack of runs; `select` drops finished runs from its state."""

    def __init__(self, name: str, params: dict[str, torch.Tensor], hyper: dict[str, torch.Tensor]) -> None:
        self.name = name
        self.ndims = {n: p.dim() for n, p in params.items()}
        self.state: dict[str, torch.Tensor] = {}
        if name == "sgd" or name in ("adam", "adamw"):
            self.state = {n: torch.zeros_like(p) for n, p in params.items()}  # momentum buffer / exp_avg
        if name in ("adam", "adamw"):
            self.state.update({f"{n}.exp_avg_sq": torch.zeros_like(p) for n, p in params.items()})
        if name == "rmsprop":  # the squared-gradient average, and the momentum buffer
            self.state = {f"{n}.square_avg": torch.zeros_like(p) for n, p in params.items()}
            self.state.update({f"{n}.momentum_buffer": torch.zeros_like(p) for n, p in params.items()})
        self._set_hyper(hyper)

    def _set_hyper(self, hyper: dict[str, torch.Tensor]) -> None:
        self.hyper = hyper
        # Host-side facts, read once: which terms are zero for every run, how long warmup lasts.
        self.max_warmup = int(hyper["warmup_steps"].max().item()) if len(hyper["lr"]) else 0
        self.uses_momentum = bool((hyper["momentum"] != 0).any().item()) if len(hyper["lr"]) else False
        self.uses_decay = bool((hyper["weight_decay"] != 0).any().item()) if len(hyper["lr"]) else False
        if self.name == "sgd" and not self.uses_momentum:
            self.state = {}
        # When every run shares its hyperparameters (always for K=1; a sweep over seeds), the update runs on host
        # floats as torch.optim's foreach path does: a few multi-tensor kernels per step for all parameters instead
        # of ~10 per parameter, which is what a small model's GPU step waits on (docs/benchmarks.md, GPU).
        same = len(hyper["lr"]) > 0 and all(bool((c == c[0]).all().item()) for c in hyper.values())
        self.uniform = {name: float(c[0]) for name, c in hyper.items()} if same else None

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """Moments and (possibly switched) hyperparameters: what a checkpoint keeps of the optimizer."""
        return {"state": dict(self.state), "hyper": dict(self.hyper)}

    def load_state_dict(self, saved: dict[str, dict[str, torch.Tensor]]) -> None:
        """Continue from a state_dict of the same runs."""
        self.state = dict(saved["state"])
        self._set_hyper(dict(saved["hyper"]))

    def switch(self, run: int, values: dict[str, float]) -> None:
        """Set hyperparameters of one run of the stack (an event-triggered switch)."""
        for name, value in values.items():
            self.hyper[name][run] = value
        self._set_hyper(self.hyper)

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
        h = self.hyper
        if self.name == "sgd":
            self._sgd(params, grads, step)
            return
        if self.name == "rmsprop":
            self._rmsprop(params, grads, self.learning_rates(step))
            return
        if self.uniform is not None:
            self._adam_foreach(params, grads, step)
            return
        lr = self.learning_rates(step)
        t = step + 1
        step_size = lr / (1 - h["beta1"] ** t)  # (run,)
        bias_correction2_sqrt = (1 - h["beta2"] ** t).sqrt()
        decay = 1 - lr * h["weight_decay"] if self.name == "adamw" and self.uses_decay else None
        one_minus_beta1, one_minus_beta2 = 1 - h["beta1"], 1 - h["beta2"]
        for name, p in params.items():
            shape = (-1,) + (1,) * (p.dim() - 1)  # broadcast (run,) over the parameter's axes
            grad = grads[name]
            if self.name == "adamw" and decay is not None:
                p.mul_(decay.view(shape))
            elif self.name == "adam" and self.uses_decay:
                grad = grad + h["weight_decay"].view(shape) * p
            exp_avg, exp_avg_sq = self.state[name], self.state[f"{name}.exp_avg_sq"]
            exp_avg.lerp_(grad, one_minus_beta1.view(shape))
            exp_avg_sq.mul_(h["beta2"].view(shape)).addcmul_(grad, grad * one_minus_beta2.view(shape))
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt.view(shape)).add_(h["eps"].view(shape))
            p.sub_(step_size.view(shape) * exp_avg / denom)

    def _host_lr(self, step: int) -> float:
        """The shared learning rate at `step` as a host float (warmup included)."""
        assert self.uniform is not None
        lr, warmup = self.uniform["lr"], self.uniform["warmup_steps"]
        return lr * min(1.0, step / warmup) if warmup > 0 else lr

    def _adam_foreach(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], step: int) -> None:
        """Adam / AdamW with shared hyperparameters: torch.optim's foreach arithmetic, term by term."""
        assert self.uniform is not None
        u, lr, t = self.uniform, self._host_lr(step), step + 1
        p_list, g_list = list(params.values()), [grads[n] for n in params]
        exp_avgs = [self.state[n] for n in params]
        exp_avg_sqs = [self.state[f"{n}.exp_avg_sq"] for n in params]
        if self.name == "adamw" and u["weight_decay"]:
            torch._foreach_mul_(p_list, 1 - lr * u["weight_decay"])
        elif self.name == "adam" and u["weight_decay"]:
            g_list = torch._foreach_add(g_list, p_list, alpha=u["weight_decay"])
        torch._foreach_lerp_(exp_avgs, g_list, 1 - u["beta1"])
        torch._foreach_mul_(exp_avg_sqs, u["beta2"])
        torch._foreach_addcmul_(exp_avg_sqs, g_list, g_list, 1 - u["beta2"])
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, (1 - u["beta2"] ** t) ** 0.5)
        torch._foreach_add_(denom, u["eps"])
        torch._foreach_addcdiv_(p_list, exp_avgs, denom, -lr / (1 - u["beta1"] ** t))

    def _rmsprop(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        """torch.optim.RMSprop (centered=False), term by term, each run with its own lr, alpha, eps, decay and
        momentum: v <- alpha v + (1 - alpha) g^2; p <- p - lr g / (sqrt(v) + eps), or through the momentum
        buffer b <- momentum b + g / (sqrt(v) + eps); p <- p - lr b."""
        h = self.hyper
        for name, p in params.items():
            shape = (-1,) + (1,) * (p.dim() - 1)
            grad = grads[name]
            if self.uses_decay:
                grad = grad.add(h["weight_decay"].view(shape) * p)
            square_avg = self.state[f"{name}.square_avg"]
            square_avg.mul_(h["alpha"].view(shape)).addcmul_(grad, grad * (1 - h["alpha"]).view(shape))
            update = grad / square_avg.sqrt().add_(h["eps"].view(shape))
            if self.uses_momentum:
                update = self.state[f"{name}.momentum_buffer"].mul_(h["momentum"].view(shape)).add_(update)
            p.sub_(lr.view(shape) * update)

    def _sgd(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], step: int) -> None:
        h = self.hyper
        if self.uniform is not None:  # one fused (foreach) op per term for all parameters, as torch.optim does
            lr_value, decay, momentum = self._host_lr(step), self.uniform["weight_decay"], self.uniform["momentum"]
            p_list, g_list = list(params.values()), [grads[n] for n in params]
            if decay:
                g_list = torch._foreach_add(g_list, p_list, alpha=decay)
            if momentum:
                buffers = [self.state[n] for n in params]
                torch._foreach_mul_(buffers, momentum)
                torch._foreach_add_(buffers, g_list)
                g_list = buffers
            torch._foreach_add_(p_list, g_list, alpha=-lr_value)
            return
        lr = self.learning_rates(step)
        for name, p in params.items():
            shape = (-1,) + (1,) * (p.dim() - 1)
            grad = grads[name]
            if self.uses_decay:
                grad = grad.add(h["weight_decay"].view(shape) * p)
            if self.uses_momentum:
                grad = self.state[name].mul_(h["momentum"].view(shape)).add_(grad)
            p.sub_(lr.view(shape) * grad)

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the runs where `keep` (run,) is True."""
        self.state = {n: v[keep] for n, v in self.state.items()}
        self._set_hyper({n: v[keep] for n, v in self.hyper.items()})
