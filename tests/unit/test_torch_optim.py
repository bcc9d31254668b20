"""Any torch.optim class over a stack (optimizer.name torch, engine/torch_optim.py): each run follows the same
optimizer on that run alone, step by step, with per-run settings, param_groups, warmup, Grokfast and ⊥Grad, a
select that drops runs and a checkpoint that resumes; a class that cannot be built is one line before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import groklab
from groklab import OptimizerConfig, RunConfig, SpecError
from groklab.config import GrokfastConfig
from groklab.engine.gradients import grokfast, grokfast_state, orthogonalize
from groklab.engine.loop import train_stack
from groklab.engine.optim import hyperparameters
from groklab.engine.torch_optim import TorchOptimizer


def _configs(**changes: object) -> list[OptimizerConfig]:
    base = OptimizerConfig.model_validate(
        {
            "name": "torch",
            "class": "torch.optim.NAdam",
            "lr": 0.01,
            "weight_decay": 0.1,
            "kwargs": {"betas": [0.9, 0.98]},
        }
    )
    other = base.model_copy(update={"lr": 0.003, "weight_decay": 0.0, "kwargs": {"momentum_decay": 0.01}, **changes})
    return [base, other]


def _follow(configs: list[OptimizerConfig], steps: int = 8, select_after: int | None = None) -> None:
    """Step a stack of two runs and, beside it, torch.optim.NAdam on each run alone (its own groups, warmup,
    filters); they must agree at every step."""
    torch.manual_seed(0)
    start = {"W_E": torch.randn(2, 6, 3, dtype=torch.float64), "W": torch.randn(2, 5, 4, dtype=torch.float64)}
    stacked = {n: t.clone() for n, t in start.items()}
    hyper = hyperparameters(configs, torch.device("cpu"), torch.float64)
    optimizer = TorchOptimizer(configs, stacked, hyper)
    references = []
    for i, c in enumerate(configs):
        params = {n: torch.nn.Parameter(t[i].clone()) for n, t in start.items()}
        grouped = {"lr": c.lr, "weight_decay": c.weight_decay} | c.param_groups.get("W_E", {})
        groups = [{"params": [params["W_E"]], **grouped}] if c.param_groups else []
        groups.append({"params": [p for n, p in params.items() if not (c.param_groups and n == "W_E")]})
        opt = torch.optim.NAdam(groups, lr=c.lr, weight_decay=c.weight_decay, **c.kwargs)
        warmup = c.warmup_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s, w=warmup: min(s / w, 1) if w else 1.0)
        one_run = {n: t[:1] for n, t in start.items()}
        references.append((params, opt, schedule, grokfast_state(one_run, c.grokfast.filter == "ema", None)))
    alive = [0, 1]
    for step in range(steps):
        if step == select_after:  # run 0 leaves the stack: run 1 goes on with its own state
            optimizer.select(torch.tensor([False, True]))
            stacked = {n: t[1:].clone() for n, t in stacked.items()}
            alive = [1]
        grads = {n: torch.randn(len(alive), *t.shape[1:], dtype=torch.float64) for n, t in stacked.items()}
        optimizer.step(stacked, grads, step)
        for row, i in enumerate(alive):
            params, opt, schedule, filter_state = references[i]
            mine = {n: g[row : row + 1].clone() for n, g in grads.items()}
            one = hyperparameters([configs[i]], torch.device("cpu"), torch.float64)
            if filter_state:
                mine = grokfast(mine, filter_state, one, step, True, None)
            if configs[i].orthogonal:
                mine = orthogonalize({n: p.detach()[None] for n, p in params.items()}, mine, torch.tensor([True]))
            for n, p in params.items():
                p.grad = mine[n][0]
            opt.step()
            schedule.step()
        for row, i in enumerate(alive):
            for n, p in references[i][0].items():
                torch.testing.assert_close(stacked[n][row], p.detach(), rtol=1e-12, atol=1e-14, msg=f"{i} {n} {step}")


def test_each_run_follows_its_torch_optimizer_alone_with_its_own_settings() -> None:
    _follow(_configs())


def test_param_groups_and_warmup_reach_each_runs_instance() -> None:
    configs = _configs(param_groups={"W_E": {"lr": 0.05, "weight_decay": 0.5}}, warmup_steps=3)
    _follow([configs[0].model_copy(update={"param_groups": {"W_E": {"lr": 0.02}}}), configs[1]])


def test_grokfast_and_orthogonal_gradients_compose_with_a_torch_optimizer() -> None:
    _follow(_configs(grokfast=GrokfastConfig(filter="ema", alpha=0.9, lamb=2.0), orthogonal=True))


def test_a_run_leaving_the_stack_keeps_the_others_state() -> None:
    _follow(_configs(), steps=8, select_after=4)


SPEC = {
    "task": {"name": "modular", "modulus": 23, "train_fraction": 0.5},
    "model": {"name": "mlp", "width": 64, "activation": "quadratic", "bias": False, "init": "gromov"},
    "optimizer": {"name": "torch", "class": "torch.optim.NAdam", "lr": 0.01, "kwargs": {"betas": [0.9, 0.98]}},
    "train": {"steps": 60, "eval_every": 10, "loss": "mse", "dtype": "float64"},
    "measures": {"names": ["weight_norms", "update_norm"]},
}


def test_a_stack_trains_as_each_run_alone_and_the_runs_differ() -> None:
    config = RunConfig.model_validate(SPEC)
    slower = config.optimizer.model_copy(update={"lr": 0.003, "kwargs": {"betas": [0.8, 0.99]}})
    runs = [("a", config), ("b", config.model_copy(update={"seed": 1})), ("c", config.model_copy(
        update={"optimizer": slower}))]  # fmt: skip
    together = {r.run_id: r for r in train_stack(runs)}  # one stack: kwargs are per run
    for run_id, c in runs:
        (alone,) = train_stack([(run_id, c)])
        for name, value in alone.state_dict.items():
            torch.testing.assert_close(together[run_id].state_dict[name], value, rtol=1e-7, atol=1e-10)
    assert len({r.final["train_loss"] for r in together.values()}) == 3
    assert together["a"].final["train_acc"] == 1.0  # it trains: NAdam fits the table


@pytest.mark.parametrize(
    ("optimizer", "says"),
    [({"class": "torch.optim.NoSuch"}, r"optimizer.class: torch.optim:NoSuch: module torch.optim has no 'NoSuch'"),
     ({"class": "torch.nn.Linear"}, r"optimizer.class: torch.nn.Linear is not a torch.optim.Optimizer subclass"),
     ({"kwargs": {"betaz": [0.9, 0.9]}}, r"optimizer.kwargs: torch.optim.NAdam refuses them \(TypeError"),
     ({"kwargs": {"lr": 0.1}}, r"optimizer.kwargs.lr: set optimizer.lr"),
     ({"name": "adamw"}, r"optimizer.class: a torch.optim class goes with optimizer.name torch")],
    ids=["no-class", "not-an-optimizer", "bad-kwargs", "lr-in-kwargs", "class-without-torch"],
)  # fmt: skip
def test_an_optimizer_that_cannot_be_built_is_one_line_before_anything_is_written(
    optimizer: dict, says: str, tmp_path: Path
) -> None:
    spec = {**SPEC, "optimizer": {**SPEC["optimizer"], **optimizer}}
    with pytest.raises(SpecError, match=says) as error:
        groklab.run(spec, out=tmp_path / "out", progress=False)
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()
