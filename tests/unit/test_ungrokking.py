"""A training set that shrinks mid-run (task.on_generalized, Varma et al. 2023's ungrokking): the subset kept is
round(F x the eligible pairs), drawn from the run's seed and recorded; from then on only it is trained on and
measured; per run inside a stack, each run as it trains alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from groklab import RunConfig
from groklab.engine.loop import train_stack
from groklab.engine.plan import make_plan
from groklab.expectations import CHECKS
from groklab.store.reader import ExperimentResult


def _shrinking(config: RunConfig, seed: int, fraction: float, step: int | None) -> RunConfig:
    task = config.task.model_copy(update={"on_generalized": {"train_fraction": fraction}, "shrink_step": step})
    return config.model_copy(update={"seed": seed, "task": task})


def test_the_kept_subset_is_recorded_and_only_it_is_trained_on(tiny_modular: RunConfig, device: str) -> None:
    config = _shrinking(tiny_modular, seed=0, fraction=0.1, step=None)  # at generalization (~110 steps)
    (run,) = train_stack([("r", config)], device)
    generalized, shrunk = run.generalized_step, run.events["shrunk_step"]
    assert generalized is not None and shrunk == generalized
    kept = run.data["train_kept"]
    assert kept.dtype == bool and kept.sum() == round(0.1 * 23**2)  # 10% of the pairs, from the 50% trained on
    (again,) = train_stack([("r", config)], device)
    assert np.array_equal(again.data["train_kept"], kept)  # drawn from the seed
    # From the shrink on, train accuracy and loss are over the kept examples only: recompute them by hand.
    from groklab.data import make_data
    from groklab.models import build_model

    data = make_data(config.task, 0)
    model = build_model(config.model, data)
    params = {n: p[None] for n, p in run.state_dict.items()}
    logits = model.forward(params, model.prepare(data.x_train[None]))[0]
    hits = (logits.argmax(-1) == data.y_train).float()
    assert run.final["train_acc"] == pytest.approx(float(hits[torch.from_numpy(kept)].mean()), abs=1e-6)
    assert "train_kept" not in train_stack([("r", tiny_modular)], device)[0].data  # no change, no record


def test_shrinking_runs_of_a_stack_equal_each_run_alone(tiny_modular: RunConfig, device: str) -> None:
    # In float64: trained on 15% of the pairs a run turns chaotic at ~230 steps, where float32's rounding (stacked
    # and alone 1e-9 apart, as without a shrink) grows to 1e-2 within a few evaluations; float64's stays tiny.
    tiny_modular = tiny_modular.model_copy(update={"train": tiny_modular.train.model_copy(update={"dtype": "float64"})})
    runs = [
        ("a", _shrinking(tiny_modular, seed=0, fraction=0.15, step=30)),
        ("b", _shrinking(tiny_modular, seed=1, fraction=0.3, step=60)),
        ("c", _shrinking(tiny_modular, seed=2, fraction=0.2, step=None)),
        ("d", tiny_modular.model_copy(update={"seed": 3})),
    ]
    assert len(make_plan(runs, device).stacks) == 1  # the change is per run: one stack
    stacked = {r.run_id: r for r in train_stack(runs, device)}
    for run_id, config in runs:
        (alone,) = train_stack([(run_id, config)], device)
        assert stacked[run_id].events.get("shrunk_step") == alone.events.get("shrunk_step")
        for name in alone.state_dict:
            torch.testing.assert_close(stacked[run_id].state_dict[name], alone.state_dict[name], rtol=1e-7, atol=1e-9)
        for name in ("train_acc", "test_acc", "train_loss"):
            np.testing.assert_allclose(stacked[run_id].metrics[name], alone.metrics[name], rtol=1e-7, atol=1e-9)
    assert stacked["c"].generalized_step is not None
    assert [stacked[r].events.get("shrunk_step") for r in "abcd"] == [30, 60, stacked["c"].generalized_step, None]
    # Not vacuous: the same run without the change ends elsewhere.
    unchanged = train_stack([("a", tiny_modular)], device)[0]
    assert (unchanged.state_dict["W_in"] - stacked["a"].state_dict["W_in"]).abs().max() > 1e-3


def test_a_shrinking_training_set_is_checked(tiny_modular: RunConfig) -> None:
    spec = tiny_modular.model_dump()
    with pytest.raises(ValueError, match=r"task.on_generalized.train_fraction: 0.5; allowed: between 0 and"):
        RunConfig.model_validate({**spec, "task": {**spec["task"], "on_generalized": {"train_fraction": 0.5}}})
    with pytest.raises(ValueError, match="task.shrink_step: there is no change to make"):
        RunConfig.model_validate({**spec, "task": {**spec["task"], "shrink_step": 5}})
    shrinking = {**spec["task"], "on_generalized": {"train_fraction": 0.2}}
    with pytest.raises(ValueError, match="train.batch_size: 16 with task.on_generalized; .* allowed null"):
        RunConfig.model_validate({**spec, "task": shrinking, "train": {**spec["train"], "batch_size": 16}})


def _sizes(rows: list[tuple[str, float, int | None, float]]) -> ExperimentResult:
    """Runs (variant, kept fraction, generalized step, final test accuracy)."""
    key = "task.on_generalized.train_fraction"
    return ExperimentResult(
        root=Path("."),
        spec={"name": "x", "variants": {"ungrok": {}, "scratch": {}}},
        meta={},
        rows=[
            {
                "run_id": f"run-{i:04d}",
                "seed": 0,
                "status": "completed",
                "steps": 100,
                "memorized_step": 10,
                "generalized_step": step,
                "final": {"train_acc": 1.0, "test_acc": acc, "train_loss": 0.0, "test_loss": 1.0},
                "events": {},
                "analysis": {},
                "params": {"variant": variant, key: value},
            }
            for i, (variant, value, step, acc) in enumerate(rows)
        ],  # fmt: skip
    )


def test_critical_size_ungrokking_and_semi_grokking_checks() -> None:
    key = "task.on_generalized.train_fraction"
    scratch = [("scratch", 0.05, None, 0.01), ("scratch", 0.1, None, 0.1), ("scratch", 0.2, 80, 1.0),
               ("scratch", 0.3, 50, 1.0)]  # fmt: skip
    ungrok = [("ungrok", 0.05, 60, 0.02), ("ungrok", 0.1, 60, 0.6), ("ungrok", 0.2, 60, 1.0), ("ungrok", 0.3, 60, 1.0)]
    result = _sizes(scratch + ungrok)
    shown = "D_crit = 0.2; final test_acc of ungrok: 0.05: 0.02, 0.1: 0.60, 0.2: 1.00, 0.3: 1.00"
    falls, stays = CHECKS["ungrokks_below_critical"].fn, CHECKS["stays_above_critical"].fn
    common = {"key": key, "variant": "ungrok", "reference": "scratch"}
    assert falls(result, **common, level=0.5) == (shown, False)  # 0.1 kept 0.6: not below 0.5
    assert falls(result, **common, level=0.7) == (shown, True)
    assert stays(result, **common, level=0.99) == (shown, True)
    assert CHECKS["settles_partway"].fn(result, key=key, variant="ungrok", low=0.1, high=0.9) == (
        "final test_acc of ungrok: 0.05: 0.02, 0.1: 0.60, 0.2: 1.00, 0.3: 1.00; partway at 0.1",
        True,
    )
    assert CHECKS["critical_size"].fn(result, key=key, reference="scratch")[0].startswith("D_crit = 0.2; final")
    # a value that does not generalize above one that does moves D_crit up: generalizing must hold from it on
    gap = _sizes([("scratch", 0.1, 50, 1.0), ("scratch", 0.2, None, 0.3), ("scratch", 0.3, 50, 1.0)] + ungrok)
    assert CHECKS["critical_size"].fn(gap, key=key, reference="scratch")[0].startswith("D_crit = 0.3")
    never = _sizes([("scratch", 0.3, None, 0.1)] + ungrok)
    assert falls(never, **common, level=0.5)[1] is None and stays(never, **common, level=0.5)[1] is None
