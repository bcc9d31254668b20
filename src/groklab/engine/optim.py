"""SGD (+momentum), Adam, AdamW and RMSProp over a stack of runs, each run with its own hyperparameters.

Each hyperparameter is a tensor of shape (run,), broadcast over the parameter's other axes, so one
update serves K runs with K learning rates, weight decays, betas and epsilons. The arithmetic is
torch.optim's (the tests check it run by run); terms that are zero for every run are skipped, and
per-step scalars (warmup, bias corrections) are computed once per step, not once per parameter.

Parameter groups (optimizer.param_groups, e.g. Liu et al.'s representation W_E at its own learning rate)
are columns "W_E.lr" and "W_E.weight_decay" next to "lr" and "weight_decay": a parameter reads its own
column when it has one, so one update serves K runs with K pairs of learning rates. This is torch.optim's
param_groups, and the same as Liu et al.'s two AdamW optimizers: Adam's moments are per element, so
optimizers that share betas and eps and split the parameters compute the same update as one with groups.

Grokfast's filters and ⊥Grad's projection run on the gradients before the update (engine/gradients.py).

The step an update reads (warmup, bias corrections, Grokfast's window) is a host int, or, for a step captured in a
CUDA graph (engine/captured.py), a 0-dim tensor on the device that the stack fills before each replay: a graph
replays its kernels with the scalars they had at capture, so nothing that changes with the step may be a host
number there. With a device step every update takes the per-run path (the foreach path's lr and bias corrections
are host floats): the same update to float32 rounding (tests/unit/test_captured.py compares them step by step).
"""

from __future__ import annotations

import functools
import operator

import torch

from groklab.config import OptimizerConfig
from groklab.engine.gradients import Step, grokfast, grokfast_state, orthogonalize


def hyperparameters(
    configs: list[OptimizerConfig], device: torch.device, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """The per-run hyperparameters of a stack as (run,) tensors; NAME.lr and NAME.weight_decay for each parameter
    that some run's param_groups names (a run that does not name it gives it its lr and weight_decay)."""
    groups = sorted({name for c in configs for name in c.param_groups})
    columns = {
        "lr": [c.lr for c in configs],
        "weight_decay": [c.weight_decay for c in configs],
        "beta1": [c.betas[0] for c in configs],
        "beta2": [c.betas[1] for c in configs],
        "eps": [c.eps for c in configs],
        "momentum": [c.momentum for c in configs],
        "alpha": [c.alpha for c in configs],
        "warmup_steps": [float(c.warmup_steps) for c in configs],
        "grokfast_alpha": [c.grokfast.alpha for c in configs],
        "grokfast_ema": [c.grokfast.amplification if c.grokfast.filter == "ema" else 0.0 for c in configs],
        "grokfast_ma": [c.grokfast.amplification if c.grokfast.filter == "ma" else 0.0 for c in configs],
        "orthogonal": [float(c.orthogonal) for c in configs],
    }
    for group in groups:
        for key in ("lr", "weight_decay"):
            columns[f"{group}.{key}"] = [c.param_groups.get(group, {}).get(key, getattr(c, key)) for c in configs]
    return {name: torch.tensor(values, device=device, dtype=dtype) for name, values in columns.items()}


class StackOptimizer:
    """One optimizer for a stack of runs; `select` drops finished runs from its state."""

    takes_device_step = True
    """Whether `step` may be a device tensor (a step captured in a CUDA graph: engine/captured.py)."""

    def __init__(
        self, name: str, params: dict[str, torch.Tensor], hyper: dict[str, torch.Tensor], grokfast_window: int = 100
    ) -> None:
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
        # Which filters some run of the stack uses is fixed for its life (no event switches them).
        self.grokfast_ema = bool((hyper["grokfast_ema"] != 0).any().item()) if len(hyper["lr"]) else False
        uses_ma = bool((hyper["grokfast_ma"] != 0).any().item()) if len(hyper["lr"]) else False
        self.grokfast_window = grokfast_window if uses_ma else None
        self.filter_state = grokfast_state(params, self.grokfast_ema, self.grokfast_window)
        self.orthogonal = bool((hyper["orthogonal"] != 0).any().item()) if len(hyper["lr"]) else False
        self.update_norm: torch.Tensor | None = None
        """(run,) size of the last measured update (step(..., measure=True))."""
        self._set_hyper(hyper)

    def _set_hyper(self, hyper: dict[str, torch.Tensor]) -> None:
        self.hyper = hyper
        # Host-side facts, read once: which terms are zero for every run, how long warmup lasts.
        self.max_warmup = int(hyper["warmup_steps"].max().item()) if len(hyper["lr"]) else 0
        self.uses_momentum = bool((hyper["momentum"] != 0).any().item()) if len(hyper["lr"]) else False
        decays = [column for name, column in hyper.items() if name.endswith("weight_decay")]
        self.uses_decay = bool(any((column != 0).any().item() for column in decays)) if len(hyper["lr"]) else False
        if self.name == "sgd" and not self.uses_momentum:
            self.state = {}
        # When every run shares its hyperparameters (always for K=1; a sweep over seeds), the update runs on host
        # floats as torch.optim's foreach path does: a few multi-tensor kernels per step for all parameters instead
        # of ~10 per parameter, which is what a small model's GPU step waits on (docs/benchmarks.md, GPU).
        same = len(hyper["lr"]) > 0 and all(bool((c == c[0]).all().item()) for c in hyper.values())
        self.uniform = {name: float(c[0]) for name, c in hyper.items()} if same else None
        # The groups of that path, read once: parameter names -> their lr and weight decay as host floats.
        self.shared_groups: list[tuple[list[str], float, float]] = []
        if self.uniform is not None:
            groups: dict[str, list[str]] = {}
            for name in self.ndims:
                groups.setdefault(f"{name}." if f"{name}.lr" in self.uniform else "", []).append(name)
            for prefix, names in groups.items():
                self.shared_groups.append((names, self.uniform[prefix + "lr"], self.uniform[prefix + "weight_decay"]))

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """Moments, filter state and (possibly switched) hyperparameters: what a checkpoint keeps of the optimizer."""
        return {"state": dict(self.state), "hyper": dict(self.hyper), "filter": dict(self.filter_state)}

    def load_state_dict(self, saved: dict[str, dict[str, torch.Tensor]]) -> None:
        """Continue from a state_dict of the same runs."""
        self.state = dict(saved["state"])
        self.filter_state = dict(saved["filter"])
        self._set_hyper(dict(saved["hyper"]))

    def switch(self, run: int, values: dict[str, float]) -> None:
        """Set hyperparameters of one run of the stack (an event-triggered switch)."""
        for name, value in values.items():
            self.hyper[name][run] = value
        self._set_hyper(self.hyper)

    def column(self, name: str, key: str) -> torch.Tensor:
        """The (run,) `key` (lr, weight_decay) parameter `name` trains with: its group's, else the optimizer's."""
        return self.hyper.get(f"{name}.{key}", self.hyper[key])

    def learning_rates(self, step: Step, name: str = "") -> torch.Tensor:
        """(run,) learning rates of parameter `name` at `step` (updates done so far): lr * min(1, step / warmup)."""
        return self.warmed_up(self.column(name, "lr"), step)

    def warmed_up(self, lr: torch.Tensor, step: Step) -> torch.Tensor:
        """(run,) lr * min(1, step / warmup_steps); a host step past every run's warmup skips the product."""
        return lr * self.warmup(step) if isinstance(step, torch.Tensor) or step < self.max_warmup else lr

    def warmup(self, step: Step) -> torch.Tensor:
        """(run,) min(1, step / warmup_steps): 1 for a run without warmup. (1 / warmup) * step is what `step / warmup`
        computes for a host step (Tensor.__rtruediv__), so a device step gives the same bits."""
        warmup = self.hyper["warmup_steps"]
        return torch.where(warmup > 0, (warmup.clamp(min=1).reciprocal() * step).clamp(max=1), torch.ones_like(warmup))

    @torch.no_grad()
    def step(
        self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], step: Step, measure: bool = False
    ) -> None:
        """Update every parameter in place; `step` counts the updates done before this one. With `measure`, the
        size of each run's update |theta_{t+1} - theta_t| goes to self.update_norm (run,) (the update_norm
        measure: asked for at the step after each evaluation, it costs one copy of the parameters then)."""
        before = {n: p.clone() for n, p in params.items()} if measure else None
        self._update(params, grads, step)
        if before is not None:
            squares = [(p - before[n]).square().flatten(1).sum(1) for n, p in params.items()]
            self.update_norm = functools.reduce(operator.add, squares).sqrt()

    def _filtered(
        self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], step: Step
    ) -> dict[str, torch.Tensor]:
        """The gradients after the filters some run of the stack uses: Grokfast's, then ⊥Grad's projection."""
        if self.filter_state:
            grads = grokfast(grads, self.filter_state, self.hyper, step, self.grokfast_ema, self.grokfast_window)
        if self.orthogonal:
            grads = orthogonalize(params, grads, self.hyper["orthogonal"] != 0)
        return grads

    def _update(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], step: Step) -> None:
        """The gradient filters (Grokfast, ⊥Grad), then the optimizer's rule."""
        self._rule(params, self._filtered(params, grads, step), step)

    def _rule(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], step: Step) -> None:
        """The optimizer's update of `params` from their (filtered) gradients."""
        h = self.hyper
        if self.name == "sgd":
            self._sgd(params, grads, step)
            return
        if self.name == "rmsprop":
            self._rmsprop(params, grads, step)
            return
        if self.uniform is not None and not isinstance(step, torch.Tensor):  # host floats: a host step only
            self._adam_foreach(params, grads, step)
            return
        t = step + 1
        bias_correction1 = 1 - h["beta1"] ** t  # (run,)
        bias_correction2_sqrt = (1 - h["beta2"] ** t).sqrt()
        one_minus_beta1, one_minus_beta2 = 1 - h["beta1"], 1 - h["beta2"]
        for name, p in params.items():
            shape = (-1,) + (1,) * (p.dim() - 1)  # broadcast (run,) over the parameter's axes
            grad, lr, weight_decay = grads[name], self.learning_rates(step, name), self.column(name, "weight_decay")
            step_size = lr / bias_correction1
            if self.name == "adamw" and self.uses_decay:
                p.mul_((1 - lr * weight_decay).view(shape))
            elif self.name == "adam" and self.uses_decay:
                grad = grad + weight_decay.view(shape) * p
            exp_avg, exp_avg_sq = self.state[name], self.state[f"{name}.exp_avg_sq"]
            exp_avg.lerp_(grad, one_minus_beta1.view(shape))
            exp_avg_sq.mul_(h["beta2"].view(shape)).addcmul_(grad, grad * one_minus_beta2.view(shape))
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt.view(shape)).add_(h["eps"].view(shape))
            p.sub_(step_size.view(shape) * exp_avg / denom)

    def _host_groups(self, step: int) -> list[tuple[list[str], float, float]]:
        """With shared hyperparameters: (parameter names, lr at `step` with warmup, weight decay) per group, as
        host floats: one group for the parameters param_groups does not name, one for each it names."""
        assert self.uniform is not None
        warmup = self.uniform["warmup_steps"]
        factor = min(1.0, step / warmup) if warmup > 0 else 1.0
        return [(names, lr * factor, weight_decay) for names, lr, weight_decay in self.shared_groups]

    def _adam_foreach(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], step: int) -> None:
        """Adam / AdamW with shared hyperparameters: torch.optim's foreach arithmetic, term by term, per group."""
        for names, lr, weight_decay in self._host_groups(step):
            self._adam_group(names, params, grads, step, lr, weight_decay)

    def _adam_group(
        self,
        names: list[str],
        params: dict[str, torch.Tensor],
        grads: dict[str, torch.Tensor],
        step: int,
        lr: float,
        weight_decay: float,
    ) -> None:
        """One group's Adam / AdamW update: the parameters `names`, at host-float lr and weight decay."""
        assert self.uniform is not None
        u, t = self.uniform, step + 1
        p_list = [params[n] for n in names]
        g_list = tuple(grads[n] for n in names)  # a tuple, as the _foreach_add that may replace it returns
        exp_avgs = [self.state[n] for n in names]
        exp_avg_sqs = [self.state[f"{n}.exp_avg_sq"] for n in names]
        if self.name == "adamw" and weight_decay:
            torch._foreach_mul_(p_list, 1 - lr * weight_decay)
        elif self.name == "adam" and weight_decay:
            g_list = torch._foreach_add(g_list, p_list, alpha=weight_decay)
        torch._foreach_lerp_(exp_avgs, g_list, 1 - u["beta1"])
        torch._foreach_mul_(exp_avg_sqs, u["beta2"])
        torch._foreach_addcmul_(exp_avg_sqs, g_list, g_list, 1 - u["beta2"])
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, (1 - u["beta2"] ** t) ** 0.5)
        torch._foreach_add_(denom, u["eps"])
        torch._foreach_addcdiv_(p_list, exp_avgs, denom, -lr / (1 - u["beta1"] ** t))

    def _rmsprop(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], step: Step) -> None:
        """torch.optim.RMSprop (centered=False), term by term, each run with its own lr, alpha, eps, decay and
        momentum: v <- alpha v + (1 - alpha) g^2; p <- p - lr g / (sqrt(v) + eps), or through the momentum
        buffer b <- momentum b + g / (sqrt(v) + eps); p <- p - lr b."""
        h = self.hyper
        for name, p in params.items():
            shape = (-1,) + (1,) * (p.dim() - 1)
            grad, lr = grads[name], self.learning_rates(step, name)
            if self.uses_decay:
                grad = grad.add(self.column(name, "weight_decay").view(shape) * p)
            square_avg = self.state[f"{name}.square_avg"]
            square_avg.mul_(h["alpha"].view(shape)).addcmul_(grad, grad * (1 - h["alpha"]).view(shape))
            update = grad / square_avg.sqrt().add_(h["eps"].view(shape))
            if self.uses_momentum:
                update = self.state[f"{name}.momentum_buffer"].mul_(h["momentum"].view(shape)).add_(update)
            p.sub_(lr.view(shape) * update)

    def _sgd(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], step: Step) -> None:
        h = self.hyper
        if self.uniform is not None and not isinstance(step, torch.Tensor):  # fused (foreach) ops, as torch.optim's
            momentum = self.uniform["momentum"]
            for names, lr_value, decay in self._host_groups(step):
                p_list = [params[n] for n in names]
                g_list = tuple(grads[n] for n in names)
                if decay:
                    g_list = torch._foreach_add(g_list, p_list, alpha=decay)
                if momentum:
                    buffers = tuple(self.state[n] for n in names)
                    torch._foreach_mul_(buffers, momentum)
                    torch._foreach_add_(buffers, g_list)
                    g_list = buffers
                torch._foreach_add_(p_list, g_list, alpha=-lr_value)
            return
        for name, p in params.items():
            shape = (-1,) + (1,) * (p.dim() - 1)
            grad, lr = grads[name], self.learning_rates(step, name)
            if self.uses_decay:
                grad = grad.add(self.column(name, "weight_decay").view(shape) * p)
            if self.uses_momentum:
                grad = self.state[name].mul_(h["momentum"].view(shape)).add_(grad)
            p.sub_(lr.view(shape) * grad)

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the runs where `keep` (run,) is True."""
        self.update_norm = None  # measured for the runs of the last measured step: none of it is current now
        self.state = {n: v[keep] for n, v in self.state.items()}
        self.filter_state = {n: v[keep] for n, v in self.filter_state.items()}
        self._set_hyper({n: v[keep] for n, v in self.hyper.items()})
