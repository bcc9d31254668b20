"""Liu et al.'s toy, piece by piece: the addition task against its definition, the summed-embedding model's
templates loss against the paper's MSE, the representation's parameter group, the measures against
measures/liu.py's formulas, the phase labels, and a stack of toys against each toy alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import groklab
from groklab import AdditionTask, RunConfig, make_data, train_stack
from groklab.config import SpecError
from groklab.engine.plan import make_plan
from groklab.engine.stack import Stack
from groklab.expectations import check
from groklab.losses import per_run_loss
from groklab.measures import liu
from groklab.measures.curve_events import liu_phase

TOY = {
    "task": {"name": "addition", "operands": 10, "n_train": 45},
    "model": {
        "name": "mlp",
        "embedding": "summed",
        "embedding_dim": 1,
        "depth": 2,
        "width": 32,
        "activation": "tanh",
        "init": "liu",
        "readout": "templates",
        "template_dim": 30,
    },
    "optimizer": {"name": "adamw", "lr": 1e-4, "param_groups": {"W_E": {"lr": 1e-3}}},
    "train": {"steps": 40, "eval_every": 10, "batch_size": 45, "loss": "mse"},
    "measures": {"names": ["effective_theory", "training_set_theory"]},
}


def toy(**changes: object) -> RunConfig:
    config = RunConfig.model_validate(TOY)
    return config.model_copy(update=changes)


@pytest.mark.parametrize("seed", [0, 3])
def test_addition_task_is_every_unordered_pair_and_its_sum(seed: int) -> None:
    task = AdditionTask(operands=10, n_train=30, label_noise=0.1)
    data = make_data(task, seed)
    x = torch.cat([data.x_train, data.x_test]).tolist()
    assert sorted(map(tuple, x)) == [(a, b) for a in range(10) for b in range(a, 10)]  # 55 pairs, each once
    assert data.y_test.tolist() == data.x_test.sum(1).tolist()  # not modular: 2p - 1 = 19 sums
    assert data.y_train_clean.tolist() == data.x_train.sum(1).tolist()
    assert (len(data.x_train), data.n_classes, data.vocab) == (30, 19, 10)
    assert int(data.corrupted.sum()) == 3 and bool((data.y_train != data.y_train_clean).eq(data.corrupted).all())
    assert (data.info["train_index"] == np.flatnonzero([tuple(p) in map(tuple, data.x_train.tolist())
                                                        for p in liu.examples(10)])).all()  # fmt: skip
    other = make_data(task, seed + 1)
    assert not torch.equal(data.x_train, other.x_train)  # each seed draws its own training pairs


def test_a_task_without_test_pairs_is_refused() -> None:
    with pytest.raises(ValueError, match="task.n_train: 55 leaves no test pair; allowed 1..54"):
        AdditionTask(operands=10, n_train=55)


def test_templates_loss_is_the_papers_mse_and_the_prediction_the_nearest_template() -> None:
    stack = Stack([("a", toy()), ("b", toy(seed=1))])
    logits, cache = stack.model.run_with_cache(stack.params, stack.runs.x_train, buffers=stack.runs.buffers)
    out, templates = cache["hook_output"], stack.runs.buffers["T_labels"]  # (run, n, 30), (run, 19, 30)
    for run in range(2):  # toy/train_add.py: torch.mean((outputs - labels) ** 2); argmin of the distances
        labels = templates[run][stack.runs.y_train[run]]
        expected = ((out[run] - labels) ** 2).mean()
        torch.testing.assert_close(per_run_loss(logits, stack.runs.y_train, "template_mse")[run], expected)
        nearest = ((out[run][:, None] - templates[run][None]) ** 2).sum(-1).argmin(-1)
        assert torch.equal(logits[run].argmax(-1), nearest)
    assert not torch.equal(templates[0], templates[1])  # each seed draws its own templates
    torch.testing.assert_close(templates[1], stack.model.label_templates(1))  # ... and always the same ones


def test_liu_init_draws_the_representation_uniformly_in_half_a_unit() -> None:
    stack = Stack([(f"r{s}", toy(seed=s)) for s in range(20)])
    E = stack.params["W_E"].detach()
    assert E.abs().max() <= 0.5 and E.std() == pytest.approx(1 / 12**0.5, rel=0.2)  # U(-1/2, 1/2)


def test_draws_take_a_full_batch_of_distinct_examples_every_step() -> None:
    config = toy(task=AdditionTask(n_train=50), train=toy().train.model_copy(update={"batch_order": "draws"}))
    stack = Stack([("a", config), ("b", config.model_copy(update={"seed": 1}))])
    batches = [stack.batch()[0] for _ in range(12)]  # (run, 45, 2) each: never the 5 left over of an epoch
    for x in batches:
        assert x.shape == (2, 45, 2)
        for run in range(2):
            assert len(set(map(tuple, x[run].tolist()))) == 45  # without replacement
    assert not all(torch.equal(batches[0][0], x[0]) for x in batches[1:])  # a new draw each step
    assert not torch.equal(batches[0][0], batches[0][1])  # each run its own


@pytest.mark.parametrize("batch_order", ["epochs", "draws"])
def test_a_stack_of_toys_equals_each_toy_alone(batch_order: str) -> None:
    base = toy(task=AdditionTask(n_train=50), train=toy().train.model_copy(update={"batch_order": batch_order}))
    runs = [
        ("r0", base),
        ("r1", base.model_copy(update={"seed": 1, "optimizer": base.optimizer.model_copy(
            update={"lr": 3e-4, "weight_decay": 1.0, "param_groups": {"W_E": {"lr": 3e-3, "weight_decay": 0.1}}})})),
        ("r2", base.model_copy(update={"seed": 2, "optimizer": base.optimizer.model_copy(update={"param_groups": {}})})),
    ]  # fmt: skip
    assert len(make_plan(runs).stacks) == 1  # the groups' rates are per run: one stack
    stacked = {r.run_id: r for r in train_stack(runs)}
    for run_id, config in runs:
        (alone,) = train_stack([(run_id, config)])
        for name, value in alone.state_dict.items():
            torch.testing.assert_close(stacked[run_id].state_dict[name], value, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(
            torch.tensor(stacked[run_id].metrics["liu_rqi"]), torch.tensor(alone.metrics["liu_rqi"])
        )
    E = [stacked[r].state_dict["W_E"] for r in ("r0", "r1", "r2")]
    assert not torch.allclose(E[0], E[1]) and not torch.allclose(E[0], E[2])  # the runs really differ


def test_the_measures_are_the_formulas_of_measures_liu() -> None:
    (result,) = train_stack([("r", toy(train=toy().train.model_copy(update={"steps": 400, "eval_every": 400})))])
    E, train = result.state_dict["W_E"].double().numpy(), result.data["train_index"]
    P0, A = liu.parallelograms(10)
    in_train = np.isin(P0, train).all(axis=1)
    assert result.metrics["liu_rqi"][-1] == liu.rqi(E)
    assert result.metrics["predicted_acc"][-1] == liu.predicted_accuracy(10, train, E)
    assert result.metrics["effective_loss"][-1] == pytest.approx(liu.effective_loss(E, A[in_train]))
    assert result.analysis["ideal_acc"] == liu.ideal_accuracy(10, train)
    assert result.analysis["representation_dof"] == liu.implied(10, train)[1] - 2
    assert len(set(result.metrics["liu_rqi"])) > 1  # the representation moved: the measures are not constants


@pytest.mark.parametrize(
    ("train_acc", "test_acc", "phase"),
    [
        ([0.2, 0.95, 1.0, 1.0], [0.1, 0.92, 1.0, 1.0], "comprehension"),  # test 0 steps after train
        ([0.2, 0.95, 1.0, 1.0], [0.1, 0.1, 0.5, 0.9], "grokking"),  # 9,500 steps after (9/10 in float32 counts)
        ([0.2, 0.95, 1.0, 1.0], [0.1, 0.1, 0.5, 0.8], "memorization"),
        ([0.2, 0.5, 0.6, 0.7], [0.1, 0.1, 0.2, 0.3], "confusion"),
        ([0.2, 0.5, 0.6, 0.7], [0.1, 0.1, 0.2, 0.95], None),  # the code leaves it unlabelled
    ],
)
def test_liu_phases_follow_the_phase_diagram_code(train_acc: list[float], test_acc: list[float], phase: str) -> None:
    steps = np.array([0, 500, 5000, 10000])
    test = np.asarray(test_acc, dtype=np.float32).tolist()  # as stored: 0.9 is 0.89999998
    assert liu_phase(steps, train_acc, test)["liu_phase"] == phase


def test_a_parameter_group_must_name_a_parameter() -> None:
    config = toy(optimizer=toy().optimizer.model_copy(update={"param_groups": {"W_Q": {"lr": 0.1}}}))
    with pytest.raises(SpecError, match="optimizer.param_groups: W_Q not a parameter of this model; allowed: W_E, "):
        make_plan([("r", config)])


def test_templates_need_the_mse_loss() -> None:
    with pytest.raises(ValueError, match="train.loss: cross_entropy with model.readout templates; allowed: mse"):
        RunConfig.model_validate({**TOY, "train": {"loss": "cross_entropy"}})


def test_agrees_compares_each_runs_last_measured_values(tmp_path: Path) -> None:
    claim = {"claim": "c", "source": "s", "check": "agrees",
             "params": {"column": "predicted_acc", "other": "test_acc", "tolerance": 0.05}}  # fmt: skip
    spec = {**TOY, "name": "toy", "train": {**TOY["train"], "steps": 300, "eval_every": 100}, "seeds": 2}
    result = groklab.run({**spec, "claims": [claim]}, out=tmp_path / "toy", progress=False)
    last = result.metrics.sort_values("step").groupby("run_id").last()
    gaps = (last["predicted_acc"] - last["test_acc"]).abs()
    (verdict,) = check(result)
    assert verdict.measured.startswith(f"median |difference| {gaps.median():.3f}, largest {gaps.max():.3f}")
    assert verdict.met == bool(gaps.median() <= 0.05)


def test_a_bad_group_rate_is_one_line_naming_its_key() -> None:
    from groklab.config import parse_experiment

    spec = {**TOY, "optimizer": {**TOY["optimizer"], "param_groups": {"W_E": {"lr": -1}}}}
    with pytest.raises(SpecError) as error:
        parse_experiment(spec)
    assert str(error.value) == "optimizer.param_groups.W_E.lr: -1.0; allowed: lr >= 0 (0 freezes it), weight_decay >= 0"
