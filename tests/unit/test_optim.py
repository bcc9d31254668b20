"""The stacked optimizer follows torch.optim run by run (same hyperparameters, same trajectory)."""

from __future__ import annotations

import pytest
import torch

from groklab import OptimizerConfig
from groklab.engine.optim import StackOptimizer, hyperparameters

CASES = [
    (OptimizerConfig(name="sgd", lr=0.1, weight_decay=0.01, momentum=0.9), torch.optim.SGD, {"momentum": 0.9}),
    (OptimizerConfig(name="sgd", lr=0.05, weight_decay=0.1), torch.optim.SGD, {}),
    (OptimizerConfig(name="adam", lr=1e-2, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6), torch.optim.Adam, {}),
    (
        OptimizerConfig(name="adamw", lr=1e-2, weight_decay=1.0, betas=(0.9, 0.98), warmup_steps=3),
        torch.optim.AdamW,
        {},
    ),
    (OptimizerConfig(name="rmsprop", lr=1e-2, weight_decay=0.1, alpha=0.9, eps=1e-6), torch.optim.RMSprop,
     {"alpha": 0.9}),
    (OptimizerConfig(name="rmsprop", lr=1e-3, alpha=0.99, momentum=0.5, warmup_steps=2), torch.optim.RMSprop,
     {"alpha": 0.99, "momentum": 0.5}),
]  # fmt: skip


@pytest.mark.parametrize("shared", [False, True], ids=["per-run-hyperparameters", "shared-hyperparameters"])
@pytest.mark.parametrize(("config", "torch_class", "extra"), CASES)
def test_each_run_follows_torch_optim(config: OptimizerConfig, torch_class: type, extra: dict, shared: bool) -> None:
    torch.manual_seed(0)
    # Shared hyperparameters take the host-float (foreach) path; per-run ones the (run,)-tensor path.
    other = config if shared else config.model_copy(update={"lr": config.lr * 3, "weight_decay": 0.0})
    configs = [config, other]
    start = torch.randn(2, 5, 4, dtype=torch.float64)
    stacked = {"W": start.clone()}
    optimizer = StackOptimizer(config.name, stacked, hyperparameters(configs, torch.device("cpu"), torch.float64))
    references = []
    for i, c in enumerate(configs):
        w = torch.nn.Parameter(start[i].clone())
        kwargs = {"lr": c.lr, "weight_decay": c.weight_decay, **extra}
        if c.name in ("adam", "adamw"):
            kwargs |= {"betas": c.betas, "eps": c.eps}
        if c.name == "rmsprop":
            kwargs |= {"eps": c.eps}
        opt = torch_class([w], **kwargs)
        warmup = c.warmup_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s, w=warmup: min(s / w, 1) if w else 1.0)
        references.append((w, opt, schedule))
    for step in range(8):
        grads = torch.randn(2, 5, 4, dtype=torch.float64)
        optimizer.step(stacked, {"W": grads}, step)
        for i, (w, opt, schedule) in enumerate(references):
            w.grad = grads[i].clone()
            opt.step()
            schedule.step()
    for i, (w, _, _) in enumerate(references):
        torch.testing.assert_close(stacked["W"][i], w.detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shared", [False, True], ids=["per-run-hyperparameters", "shared-hyperparameters"])
@pytest.mark.parametrize(("config", "torch_class", "extra"), CASES)
def test_parameter_groups_follow_torch_optim_param_groups(
    config: OptimizerConfig, torch_class: type, extra: dict, shared: bool
) -> None:
    """optimizer.param_groups (Liu et al.'s representation vs decoder rates) == torch.optim's param_groups, each run
    with its own group settings; a run that names no group trains W_E with its optimizer.lr / weight_decay."""
    torch.manual_seed(1)
    grouped = config.model_copy(update={"param_groups": {"W_E": {"lr": config.lr * 7, "weight_decay": 0.5}}})
    other = grouped if shared else config.model_copy(update={"param_groups": {"W_E": {"lr": config.lr / 5}}})
    configs = [grouped, other]
    start = {"W_E": torch.randn(2, 6, 1, dtype=torch.float64), "W": torch.randn(2, 5, 4, dtype=torch.float64)}
    stacked = {name: t.clone() for name, t in start.items()}
    optimizer = StackOptimizer(config.name, stacked, hyperparameters(configs, torch.device("cpu"), torch.float64))
    references = []
    for i, c in enumerate(configs):
        e, w = torch.nn.Parameter(start["W_E"][i].clone()), torch.nn.Parameter(start["W"][i].clone())
        group = {"lr": c.lr, "weight_decay": c.weight_decay} | c.param_groups["W_E"]
        kwargs = {"lr": c.lr, "weight_decay": c.weight_decay, **extra}
        if c.name in ("adam", "adamw"):
            kwargs |= {"betas": c.betas, "eps": c.eps}
        if c.name == "rmsprop":
            kwargs |= {"eps": c.eps}
        opt = torch_class([{"params": [e], **group}, {"params": [w]}], **kwargs)
        warmup = c.warmup_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s, w=warmup: min(s / w, 1) if w else 1.0)
        references.append(((e, w), opt, schedule))
    for step in range(8):
        grads = {name: torch.randn_like(t) for name, t in start.items()}
        optimizer.step(stacked, grads, step)
        for i, ((e, w), opt, schedule) in enumerate(references):
            e.grad, w.grad = grads["W_E"][i].clone(), grads["W"][i].clone()
            opt.step()
            schedule.step()
    for i, ((e, w), _, _) in enumerate(references):
        torch.testing.assert_close(stacked["W_E"][i], e.detach(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(stacked["W"][i], w.detach(), rtol=1e-10, atol=1e-12)
