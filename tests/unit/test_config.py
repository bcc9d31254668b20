"""Specs: expansion, overrides, and every bad input as one clear line naming the key."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from groklab import Experiment, SpecError, expand_runs
from groklab.config import apply_overrides, load_yaml, parse_experiment, parse_scalar, run_params


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


def test_variants_times_sweep_times_seeds_each_run_named() -> None:
    experiment = parse_experiment(
        {
            "seeds": 2,
            "sweep": {"task.train_fraction": [0.3, 0.5]},
            "variants": {"baseline": {}, "ema": {"optimizer.grokfast.filter": "ema", "optimizer.weight_decay": 0.005}},
        }
    )
    runs = expand_runs(experiment)
    assert len(runs) == 8 and [r.variant for r in runs] == ["baseline"] * 4 + ["ema"] * 4
    assert {(r.optimizer.grokfast.filter, r.optimizer.weight_decay) for r in runs} == {("none", 0.0), ("ema", 0.005)}
    assert {(r.task.train_fraction, r.seed) for r in runs if r.variant == "ema"} == {
        (f, s) for f in (0.3, 0.5) for s in (0, 1)
    }
    assert run_params(runs[-1])["variant"] == "ema"
    assert "variant" not in run_params(expand_runs(Experiment())[0])  # no variants: the params are as before


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
    ({"variants": {"a": {"optimizer.lrr": 0.1}}}, "variants.a.optimizer.lrr: unknown key"),
    ({"variants": {"a": {"optimizer.lr": -1}}}, "optimizer.lr: -1.0 must be > 0 (variant a)"),
    ({"variants": {"a b": {}}}, "variants: 'a b' must be a plain name"),
    ({"variants": {"a": {"seeds": 3}}}, "variants.a.seeds: keys are dotted paths under task, model, optimizer, train"),
    (
        {"variants": {"a": {"optimizer.lr": 0.1}}, "sweep": {"optimizer.lr": [0.1, 0.2]}},
        "variants.a.optimizer.lr: also swept",
    ),
    ({"optimizer": {"grokfast": {"filter": "kalman"}}}, "optimizer.grokfast.filter"),
]


@pytest.mark.parametrize(("data", "expected"), BAD_SPECS)
def test_bad_specs_name_the_key(data: dict, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        expand_runs(parse_experiment(data))
    message = str(info.value)
    assert expected in message, message
    assert "\n" not in message


BOMB = "notes: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
).replace("notes: &a", "a: &a")
"""9 anchors of 10 references each: 1 kB that stands for 10^9 values (the "billion laughs")."""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BOMB, r"stands for 1,234,567,909 values \(its aliases expanded\); at most 100,000$"),
        ("name: x\nseeds: " + "[" * 5000 + "]" * 5000, "nested deeper than 100 levels$"),
        ("name: x\nseeds: " + "[" * 150 + "]" * 150, "nested 151 levels deep; at most 100$"),
        ("name: x\noptimizer: {lr: 0.1, lr: 0.2}\n", r"malformed YAML at line 2: duplicate key 'lr'$"),
    ],
    ids=["alias-bomb", "deep", "deeper-than-allowed", "duplicate-key"],
)
def test_yaml_is_bounded_and_unambiguous_before_anything_is_built(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(SpecError, match=message):
        load_yaml(path)
    assert time.perf_counter() - started < 5.0  # refused on the composed document, never expanded (minutes)


def test_a_value_on_the_command_line_is_bounded_too() -> None:
    with pytest.raises(SpecError, match="^the value .*: stands for 1,234,567,909 values"):
        parse_scalar("{" + BOMB.replace("\n", ", ").rstrip(", ") + "}")
    assert parse_scalar("{a: &x [1, 2], b: *x}") == {"a": [1, 2], "b": [1, 2]}  # anchors themselves are fine
