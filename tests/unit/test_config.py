"""Specs: expansion, overrides, and every bad input as one clear line naming the key."""

from __future__ import annotations

import pytest

from groklab import Experiment, SpecError, expand_runs
from groklab.config import apply_overrides, parse_experiment, run_params


def test_sweep_times_seeds_expands_to_every_run() -> None:
    experiment = parse_experiment(
        {"seeds": 3, "sweep": {"optimizer.weight_decay": [0.1, 1.0], "task.train_fraction": [0.3, 0.5]}}
    )
    runs = expand_runs(experiment)
    assert len(runs) == 12
    combos = {(r.optimizer.weight_decay, r.task.train_fraction, r.seed) for r in runs}
    assert len(combos) == 12


def test_overrides_parse_as_yaml_scalars() -> None:
    data = apply_overrides({}, ["optimizer.lr=0.01", "model.bias=false", "optimizer.betas=[0.9, 0.98]"])
    experiment = parse_experiment(data)
    assert experiment.optimizer.lr == 0.01 and experiment.model.bias is False
    assert experiment.optimizer.betas == (0.9, 0.98)
    swept = parse_experiment(apply_overrides({}, sweeps=["optimizer.betas=[0.9,0.98],[0.9,0.999]"]))
    assert swept.sweep["optimizer.betas"] == [[0.9, 0.98], [0.9, 0.999]]


def test_params_are_dotted_and_complete() -> None:
    params = run_params(expand_runs(Experiment())[0])
    assert params["task.modulus"] == 97 and params["optimizer.lr"] == 0.001 and params["seed"] == 0
    assert all(not isinstance(v, dict) for v in params.values())


BAD_SPECS = [
    ({"task": {"modulos": 97}}, "task.modulos: unknown key"),
    ({"optimzer": {}}, "optimzer: unknown key"),
    ({"model": {"width": "wide"}}, "model.width"),
    ({"optimizer": {"lr": 0}}, "optimizer.lr: 0.0 must be > 0"),
    ({"optimizer": {"lr": -1e-3}}, "optimizer.lr"),
    ({"task": {"train_fraction": 1.5}}, "task.train_fraction: 1.5 is outside (0, 1)"),
    ({"task": {"train_fraction": 0}}, "task.train_fraction"),
    ({"task": {"name": "parity", "n_bits": 5, "k": 6}}, "task.k: 6 is larger than task.n_bits"),
    ({"task": {"operation": "div", "modulus": 96}}, "task.modulus: 96 is not prime"),
    ({"task": {"name": "graph"}}, "task.name"),
    ({"model": {"activation": "swish"}}, "model.activation"),
    ({"seeds": 0}, "seeds"),
    ({"sweep": {"optimizer.learning_rate": [0.1]}}, "sweep.optimizer.learning_rate: unknown key"),
    ({"sweep": {"optimizer.lr": [0.1, -1]}}, "optimizer.lr"),
    ({"sweep": {"task.operation": ["div"]}, "task": {"modulus": 12}}, "task.modulus: 12 is not prime"),
]


@pytest.mark.parametrize(("data", "expected"), BAD_SPECS)
def test_bad_specs_name_the_key(data: dict, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        expand_runs(parse_experiment(data))
    message = str(info.value)
    assert expected in message, message
    assert "\n" not in message
