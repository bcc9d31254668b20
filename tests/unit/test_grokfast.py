"""Grokfast's gradient filters follow the reference formulas run by run, through torch.optim, in a stack where runs
differ (none / ema / ma, their own alpha and lamb), when runs are cut out, and across a checkpoint; the checks
that compare variants by their steps to a level."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pandas as pd
import pytest
import torch

from groklab import OptimizerConfig, RunConfig, train_stack
from groklab.config import GrokfastConfig
from groklab.engine.optim import StackOptimizer, hyperparameters
from groklab.engine.plan import make_plan
from groklab.expectations import CHECKS
from groklab.store.reader import ExperimentResult

WINDOW = 5


def reference_filter(config: GrokfastConfig):  # noqa: ANN201  (a generator-backed closure)
    """ironjr/grokfast's filters as their formulas say, one run, one parameter: g -> filtered g."""
    lamb = config.amplification
    history: deque[torch.Tensor] = deque(maxlen=WINDOW)
    average: list[torch.Tensor] = []

    def apply(grad: torch.Tensor) -> torch.Tensor:
        if config.filter == "ema":
            h = average[0] if average else grad.clone()  # the average starts at the first gradient...
            average[:] = [h * config.alpha + grad * (1 - config.alpha)]  # ...and is updated with it at once
            return grad + average[0] * lamb
        if config.filter == "ma":
            history.append(grad.clone())
            if len(history) < WINDOW:  # no amplification until the window is full
                return grad
            return grad + sum(history) / len(history) * lamb
        return grad

    return apply


def _configs(shared: bool) -> list[OptimizerConfig]:
    base = OptimizerConfig(name="adam", lr=1e-2, weight_decay=0.01, betas=(0.9, 0.98))
    if shared:  # one setting for every run: the optimizer's host-float path
        return [base.model_copy(update={"grokfast": GrokfastConfig(filter="ema")})] * 2
    return [
        base,
        base.model_copy(update={"grokfast": GrokfastConfig(filter="ema")}),
        base.model_copy(update={"grokfast": GrokfastConfig(filter="ema", alpha=0.9, lamb=0.5), "lr": 3e-3}),
        base.model_copy(update={"grokfast": GrokfastConfig(filter="ma", window=WINDOW)}),
        base.model_copy(update={"grokfast": GrokfastConfig(filter="ma", window=WINDOW, lamb=1.0)}),
    ]


def _references(configs: list[OptimizerConfig], start: torch.Tensor) -> list[tuple]:
    out = []
    for i, c in enumerate(configs):
        w = torch.nn.Parameter(start[i].clone())
        opt = torch.optim.Adam([w], lr=c.lr, weight_decay=c.weight_decay, betas=c.betas, eps=c.eps)
        out.append((w, opt, reference_filter(c.grokfast)))
    return out


def _step_both(
    optimizer: StackOptimizer, stacked: dict, references: list[tuple], grads: torch.Tensor, step: int
) -> None:
    """One update of the stack and of each run's reference (filter, then torch.optim) with the same gradients."""
    optimizer.step(stacked, {"W": grads}, step)
    for i, (w, opt, apply) in enumerate(references):
        w.grad = apply(grads[i].clone())
        opt.step()


def _assert_on_references(stacked: dict, references: list[tuple]) -> None:
    for i, (w, _, _) in enumerate(references):
        torch.testing.assert_close(stacked["W"][i], w.detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shared", [False, True], ids=["runs-differ", "shared"])
def test_each_run_follows_the_reference_filter_and_torch_optim(shared: bool) -> None:
    torch.manual_seed(0)
    configs = _configs(shared)
    start = torch.randn(len(configs), 6, 3, dtype=torch.float64)
    stacked = {"W": start.clone()}
    hyper = hyperparameters(configs, torch.device("cpu"), torch.float64)
    optimizer = StackOptimizer("adam", stacked, hyper, grokfast_window=WINDOW)
    references = _references(configs, start)
    for step in range(3 * WINDOW):
        grads = torch.randn(len(configs), 6, 3, dtype=torch.float64)
        _step_both(optimizer, stacked, references, grads, step)
    _assert_on_references(stacked, references)
    if not shared:  # not vacuous: every filter moved its run away from the unfiltered one
        for i in range(1, len(configs)):
            assert (stacked["W"][i] - stacked["W"][0]).abs().max() > 1e-3


def test_cut_runs_and_a_checkpoint_keep_each_run_on_its_reference() -> None:
    torch.manual_seed(1)
    configs = _configs(shared=False)
    start = torch.randn(len(configs), 4, dtype=torch.float64)
    stacked = {"W": start.clone()}
    optimizer = StackOptimizer("adam", stacked, hyperparameters(configs, torch.device("cpu"), torch.float64), WINDOW)
    references = _references(configs, start)
    keep = torch.tensor([True, False, True, True, False])
    for step in range(4 * WINDOW):
        if step == 7:  # runs 1 and 4 finished: cut out of the state, the others go on
            optimizer.select(keep)
            stacked = {"W": stacked["W"][keep]}
            references = [r for r, k in zip(references, keep) if k]
        if step == 11:  # save and restore into a fresh optimizer, as a resumed run does
            saved = optimizer.state_dict()
            optimizer = StackOptimizer("adam", stacked, {n: v.clone() for n, v in saved["hyper"].items()}, WINDOW)
            optimizer.load_state_dict(saved)
        grads = torch.randn(len(references), 4, dtype=torch.float64)
        _step_both(optimizer, stacked, references, grads, step)
    _assert_on_references(stacked, references)


def test_the_paper_defaults_and_no_state_without_a_filter() -> None:
    assert GrokfastConfig(filter="ema").amplification == 2.0
    assert GrokfastConfig(filter="ma").amplification == 5.0
    assert GrokfastConfig(filter="ma", lamb=0.1).amplification == 0.1
    assert GrokfastConfig(lamb=3.0).amplification == 0.0
    plain = [OptimizerConfig(name="adamw")] * 2
    optimizer = StackOptimizer(
        "adamw", {"W": torch.zeros(2, 3)}, hyperparameters(plain, torch.device("cpu"), torch.float32)
    )
    assert optimizer.filter_state == {}  # a run without Grokfast pays nothing for it


def _variants_result(tmp_path: Path, curves: dict[str, list[float]]) -> ExperimentResult:
    """One run per variant, test accuracy evaluated every 100 steps."""
    rows = []
    for i, (variant, accuracy) in enumerate(curves.items()):
        run_dir = tmp_path / "runs" / f"run-{i:04d}"
        run_dir.mkdir(parents=True)
        steps = [100 * k for k in range(len(accuracy))]
        pd.DataFrame({"step": steps, "test_acc": accuracy}).to_parquet(run_dir / "metrics.parquet")
        rows.append({"run_id": f"run-{i:04d}", "seed": 0, "status": "completed", "steps": steps[-1],
                     "memorized_step": None, "generalized_step": None, "final": {}, "events": {}, "analysis": {},
                     "params": {"variant": variant}})  # fmt: skip
    return ExperimentResult(
        root=tmp_path, spec={"name": "x", "variants": dict.fromkeys(curves, {})}, meta={}, rows=rows
    )


def test_steps_to_a_level_variant_by_variant(tmp_path: Path) -> None:
    result = _variants_result(
        tmp_path, {"baseline": [0.0, 0.1, 0.2, 0.5, 0.96], "ema": [0.0, 0.5, 0.95, 1.0, 1.0], "ma": [0.0] * 5}
    )
    reaches = CHECKS["variant_reaches_by"].fn
    listing = "median first step per variant: baseline: 400 (1/1), ema: 200 (1/1), ma: never (0/1)"
    assert reaches(result, variant="ema", column="test_acc", level=0.95, limit=200) == (listing, True)
    assert reaches(result, variant="ema", column="test_acc", level=0.95, limit=199)[1] is False
    assert reaches(result, variant="ma", column="test_acc", level=0.95, limit=10**6)[1] is False  # never
    assert reaches(result, variant="none", column="test_acc", level=0.95, limit=1)[1] is None
    assert CHECKS["steps_to_level"].fn(result, column="test_acc", level=0.95) == (listing, None)


def test_grokfast_runs_of_a_stack_equal_each_run_alone(tiny_modular: RunConfig, device: str) -> None:
    """A stack mixing no filter, EMA and MA (with its own settings each) trains each run as it trains alone."""
    base = tiny_modular.model_copy(update={"train": tiny_modular.train.model_copy(update={"steps": 40})})
    window = base.optimizer.model_copy(update={"grokfast": GrokfastConfig(window=8)})
    settings = [
        GrokfastConfig(window=8),
        GrokfastConfig(filter="ema", window=8),
        GrokfastConfig(filter="ema", alpha=0.9, lamb=1.0, window=8),
        GrokfastConfig(filter="ma", window=8),
    ]
    runs = [
        (f"r{i}", base.model_copy(update={"seed": i, "optimizer": window.model_copy(update={"grokfast": g})}))
        for i, g in enumerate(settings)
    ]
    assert len(make_plan(runs, device).stacks) == 1  # one stack: the filter settings are per run
    stacked = {r.run_id: r for r in train_stack(runs, device)}
    for run_id, config in runs:
        (alone,) = train_stack([(run_id, config)], device)
        for name in stacked[run_id].state_dict:
            torch.testing.assert_close(stacked[run_id].state_dict[name], alone.state_dict[name], rtol=1e-4, atol=1e-5)
    # Not vacuous: the same seed with and without a filter ends elsewhere.
    plain = train_stack([("p", runs[1][1].model_copy(update={"optimizer": window}))], device)[0]
    assert (plain.state_dict["W_in"] - stacked["r1"].state_dict["W_in"]).abs().max() > 1e-3


def test_a_variant_ends_above_or_below_a_level(tmp_path: Path) -> None:
    result = _variants_result(tmp_path, {"float32": [0.0, 0.1, 0.2], "float64": [0.0, 0.6, 0.99]})
    above, below = CHECKS["variant_ends_above"].fn, CHECKS["variant_ends_below"].fn
    listing = "median final test_acc per variant: float32: 0.2, float64: 0.99"
    assert above(result, variant="float64", column="test_acc", limit=0.99) == (listing, True)
    assert above(result, variant="float32", column="test_acc", limit=0.5)[1] is False
    assert below(result, variant="float32", column="test_acc", limit=0.5) == (listing, True)
    assert below(result, variant="float64", column="test_acc", limit=0.5)[1] is False
    assert below(result, variant="bf16", column="test_acc", limit=0.5)[1] is None
