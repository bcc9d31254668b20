"""Lazy -> rich training (Kumar et al. 2024): the teacher's regression task against its definition, R^2 as the
accuracy of a regression, the paired init's zero output, the output scale with its lr / alpha^2 per run inside
a stack, and the empirical NTK against a hand-built Jacobian."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from groklab import RunConfig, Stack, TeacherTask, make_data
from groklab.config.measures import NTKOptions
from groklab.engine.loop import train_stack
from groklab.engine.plan import make_plan
from groklab.measures.kernel import centered_alignment, empirical_ntk

SPEC = {
    "task": {"name": "teacher", "dim": 8, "n_train": 40, "n_test": 30},
    "model": {"name": "mlp", "width": 16, "activation": "near_linear", "paired": True},
    "optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": 0.0},
    "train": {"steps": 60, "loss": "mse", "eval_every": 10, "dtype": "float64"},
}


def _config(**model: object) -> RunConfig:
    return RunConfig.model_validate({**SPEC, "model": {**SPEC["model"], **model}})


def test_the_teacher_is_its_definition() -> None:
    data = make_data(TeacherTask(dim=8, n_train=40, n_test=30), seed=1)
    beta = data.info["beta"]
    assert np.linalg.norm(beta) == pytest.approx(1.0)
    x = data.x_train.double().numpy()
    np.testing.assert_allclose(data.y_train.numpy(), (x @ beta) ** 2 / 2, rtol=1e-4, atol=1e-5)  # x is float32
    assert data.n_classes == 1 and data.y_train.dtype == torch.float32
    other = make_data(TeacherTask(dim=8, n_train=40, n_test=30), seed=2)
    assert not np.allclose(other.info["beta"], beta)


def test_paired_init_starts_at_zero_and_r2_is_the_accuracy() -> None:
    for depth in (1, 2):
        stack = Stack([("r", _config(depth=depth, bias=True))])
        # neuron j + N/2 cancels neuron j, to rounding (the matmul adds the pairs in an order of its own)
        assert stack.forward(stack.runs.x_test).abs().max() < 1e-14
    (run,) = train_stack([("r", _config())])
    data = make_data(_config().task, 0)
    variance = float(data.y_test.double().var(unbiased=False))
    assert run.final["test_acc"] == pytest.approx(1 - run.final["test_loss"] / variance, rel=1e-9)
    assert run.metrics["test_acc"][0] < 0  # the zero function: R^2 = 1 - E[y^2] / Var(y) < 0
    assert run.metrics["train_acc"][-1] > run.metrics["train_acc"][0]
    with pytest.raises(ValueError, match="model.width: 15 with model.paired; allowed: an even width"):
        _config(width=15)
    with pytest.raises(ValueError, match="train.loss: cross_entropy for the teacher's regression; allowed: mse"):
        RunConfig.model_validate({**SPEC, "train": {**SPEC["train"], "loss": "cross_entropy"}})


def test_output_scales_of_a_stack_equal_each_run_alone() -> None:
    runs = [(f"a{alpha}", _config(output_scale=alpha).model_copy(update={"seed": i})) for i, alpha in
            enumerate((0.5, 1.0, 4.0))]  # fmt: skip
    assert len(make_plan(runs, "cpu").stacks) == 1
    stack = Stack(runs)
    torch.testing.assert_close(stack.optimizer.hyper["lr"], torch.tensor([0.2, 0.05, 0.05 / 16], dtype=torch.float64))
    stacked = {r.run_id: r for r in train_stack(runs)}
    for run_id, config in runs:
        (alone,) = train_stack([(run_id, config)])
        for name in alone.state_dict:
            torch.testing.assert_close(stacked[run_id].state_dict[name], alone.state_dict[name], rtol=1e-9, atol=1e-12)
    # not vacuous: the scales train differently (the same seed at another alpha ends elsewhere)
    other = train_stack([("x", _config(output_scale=4.0))])[0]
    assert (other.state_dict["W_in"] - stacked["a0.5"].state_dict["W_in"]).abs().max() > 1e-4


def test_output_scale_divides_every_param_group_lr_and_mean_field_is_kumars_network() -> None:
    config = _config(output_scale=2.0, init="mean_field", bias=False, width=6000)
    config = config.model_copy(update={"optimizer": config.optimizer.model_copy(update={"param_groups": {
        "W_out": {"lr": 0.0}, "W_in": {"lr": 0.4, "weight_decay": 0.0}}})})  # fmt: skip
    stack = Stack([("r", config)])
    hyper = stack.optimizer.hyper
    assert float(hyper["lr"][0]) == pytest.approx(0.05 / 4)
    assert float(hyper["W_in.lr"][0]) == pytest.approx(0.1) and float(hyper["W_out.lr"][0]) == 0.0
    # mean_field: f = alpha * (1/N) sum_i phi(w_i . x) - (the paired half), w_i ~ N(0, I / D): h_i has variance |x|^2 / D
    w_in, w_out = stack.params["W_in"][0].detach(), stack.params["W_out"][0].detach()
    half = w_in.shape[1] // 2
    assert torch.equal(w_out[:half], torch.full_like(w_out[:half], 1 / 6000)) and torch.equal(
        w_out[half:], -w_out[:half]
    )
    assert float(w_in[:, :half].var()) == pytest.approx(1 / 8, rel=0.05)
    x = stack.runs.x_train[0, :3]
    h = x @ w_in
    by_hand = 2.0 * (h + 0.01 * h**2) @ w_out
    torch.testing.assert_close(stack.forward(x[None])[0], by_hand, rtol=1e-9, atol=1e-12)
    # the frozen readout stays where it started
    (run,) = train_stack([("r", config)])
    assert torch.equal(run.state_dict["W_out"], w_out) and not torch.equal(run.state_dict["W_in"], w_in)


def test_the_empirical_ntk_is_the_jacobian_gram_matrix() -> None:
    config = _config(output_scale=2.0)
    stack = Stack([("r", config)])
    probe = stack.probe(0)
    x = stack.runs.x_train[0, :5]
    kernel = empirical_ntk(probe, probe.params, x[None])[0]
    # by hand: the Jacobian of each output through torch.autograd.functional, on the flattened parameters
    names = list(probe.params)
    shapes = [probe.params[n][0].shape for n in names]
    flat = torch.cat([probe.params[n][0].flatten() for n in names])

    def outputs(theta: torch.Tensor) -> torch.Tensor:
        parts, start = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            parts[name] = theta[start : start + size].view(shape)[None]
            start += size
        return stack.model.forward(parts, x[None], buffers=probe.buffers)[0, :, 0]

    jacobian = torch.autograd.functional.jacobian(outputs, flat)
    torch.testing.assert_close(kernel, jacobian @ jacobian.T)
    assert float(centered_alignment(kernel, stack.runs.y_train[0, :5])) <= 1.0 + 1e-12


def test_the_ntk_measure_of_a_stack_equals_each_run_alone() -> None:
    measures = {"names": ["ntk"], "ntk": NTKOptions(examples=6)}
    runs = [(f"a{alpha}", _config(output_scale=alpha).model_copy(update={"seed": i})) for i, alpha in
            enumerate((0.5, 2.0))]  # fmt: skip
    runs = [(run_id, c.model_copy(update={"measures": c.measures.model_copy(update=measures)})) for run_id, c in runs]
    stacked = {r.run_id: r for r in train_stack(runs)}
    for run_id, config in runs:
        (alone,) = train_stack([(run_id, config)])
        for name in ("ntk_alignment", "ntk_change"):
            torch.testing.assert_close(stacked[run_id].metrics[name], alone.metrics[name], rtol=1e-9, atol=1e-12)
        assert alone.metrics["ntk_change"][0] == 0.0  # K = K_0 at step 0 (K_0 is the cached kernel at init)
        assert alone.metrics["ntk_change"][-1] > 0.0
    # not vacuous: the rich run's kernel moves more than the lazy one's
    assert stacked["a0.5"].metrics["ntk_change"][-1] > 2 * stacked["a2.0"].metrics["ntk_change"][-1]
