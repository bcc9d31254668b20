"""Event-triggered hyperparameter switches (optimizer.on_memorized / on_generalized), per run in a stack."""

from __future__ import annotations

import copy

import pytest
import torch

from groklab import Experiment, RunConfig, SpecError, expand_runs
from groklab.engine.loop import train_stack

from ..conftest import TINY_MODULAR


def _config(seed: int, on_memorized: dict[str, float]) -> RunConfig:
    data = copy.deepcopy(TINY_MODULAR)
    data["train"].update(steps=80, eval_every=5)
    data["optimizer"]["on_memorized"] = on_memorized
    return RunConfig.model_validate({**data, "seed": seed})


def test_switch_changes_training_from_the_memorized_step_on_and_stacked_equals_alone() -> None:
    configs = {"plain": _config(0, {}), "strong": _config(0, {"weight_decay": 50.0}), "lr": _config(1, {"lr": 0.001})}
    together = {r.run_id: r for r in train_stack(list(configs.items()))}
    for run_id, config in configs.items():
        (alone,) = train_stack([(run_id, config)])
        for name, value in alone.state_dict.items():
            torch.testing.assert_close(together[run_id].state_dict[name], value, msg=f"{run_id}: {name}")
    plain, strong = together["plain"].metrics, together["strong"].metrics
    memorized = together["plain"].memorized_step
    assert memorized is not None and memorized == together["strong"].memorized_step
    index = plain["step"].index(memorized)
    # Identical up to the switch (the step after memorizing is the first to differ), to float32 rounding: the two
    # rows of one stack sit at different memory alignments, so a SIMD reduction may sum them in another order ...
    assert plain["weight_norm"][: index + 1] == pytest.approx(strong["weight_norm"][: index + 1], rel=1e-6, abs=0)
    # ... then the strong decay shrinks the weights.
    assert strong["weight_norm"][index + 2] < plain["weight_norm"][index + 2]


def test_switch_is_sweepable_and_validated() -> None:
    experiment = Experiment.model_validate(
        {**copy.deepcopy(TINY_MODULAR), "sweep": {"optimizer.on_memorized.weight_decay": [0.1, 1.0]}}
    )
    assert [r.optimizer.on_memorized for r in expand_runs(experiment)] == [{"weight_decay": 0.1}, {"weight_decay": 1.0}]
    from groklab.engine.plan import stack_key

    assert len({stack_key(r) for r in expand_runs(experiment)}) == 1  # one stack: the switch is per run
    bad = Experiment.model_validate({**copy.deepcopy(TINY_MODULAR), "sweep": {"optimizer.on_memorized.beta": [0.1]}})
    with pytest.raises(SpecError, match="on_memorized"):
        expand_runs(bad)
