"""The engine: stacked == alone, determinism, the model against a plain PyTorch MLP, events."""

from __future__ import annotations

import pytest
import torch

from groklab import MLP, MLPModel, RunConfig, make_data, train_stack
from groklab.engine.listener import Listener
from groklab.engine.result import RunResult


def _variants(base: RunConfig) -> list[tuple[str, RunConfig]]:
    """Three runs that differ in every per-run quantity a stack supports."""
    changes = [
        {"seed": 0},
        {"seed": 1, "optimizer": base.optimizer.model_copy(update={"lr": 0.003, "weight_decay": 1.0})},
        {
            "seed": 2,
            "task": base.task.model_copy(update={"label_noise": 0.1}),
            "model": base.model.model_copy(update={"init_scale": 1.5}),
        },
    ]
    return [(f"r{i}", base.model_copy(update=c)) for i, c in enumerate(changes)]


def _assert_same(a: RunResult, b: RunResult) -> None:
    assert (a.memorized_step, a.generalized_step, a.status, a.steps) == (
        b.memorized_step,
        b.generalized_step,
        b.status,
        b.steps,
    )
    for name in ("train_loss", "test_loss", "train_acc", "test_acc"):
        torch.testing.assert_close(torch.tensor(a.metrics[name]), torch.tensor(b.metrics[name]), rtol=1e-4, atol=1e-5)
    for name in a.state_dict:
        torch.testing.assert_close(a.state_dict[name], b.state_dict[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch_size", [None, 64])
def test_run_i_of_a_stack_equals_run_i_alone(tiny_modular: RunConfig, batch_size: int | None, device: str) -> None:
    base = tiny_modular.model_copy(
        update={"train": tiny_modular.train.model_copy(update={"steps": 60, "batch_size": batch_size})}
    )
    runs = _variants(base)
    stacked = {r.run_id: r for r in train_stack(runs, device)}
    for run_id, config in runs:
        (alone,) = train_stack([(run_id, config)], device)
        _assert_same(stacked[run_id], alone)
    # The runs really differ, so the comparison above is not vacuous.
    assert stacked["r0"].final["train_loss"] != stacked["r1"].final["train_loss"]


def test_parity_stack_equals_alone_with_sgd_momentum(device: str) -> None:
    config = RunConfig.model_validate(
        {
            "task": {"name": "parity", "n_bits": 12, "k": 2, "n_train": 64, "n_test": 32},
            "model": {"width": 32},
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.5, "weight_decay": 0.01},
            "train": {"steps": 40, "eval_every": 10, "batch_size": 16, "loss": "hinge"},
        }
    )
    runs = [(f"r{s}", config.model_copy(update={"seed": s})) for s in range(3)]
    stacked = {r.run_id: r for r in train_stack(runs, device)}
    for run_id, c in runs:
        _assert_same(stacked[run_id], train_stack([(run_id, c)], device)[0])


def test_same_seed_gives_identical_results(tiny_modular: RunConfig) -> None:
    config = tiny_modular.model_copy(update={"train": tiny_modular.train.model_copy(update={"steps": 30})})
    a, b = train_stack([("a", config)])[0], train_stack([("a", config)])[0]
    assert a.metrics == b.metrics
    assert all(torch.equal(a.state_dict[n], b.state_dict[n]) for n in a.state_dict)


@pytest.mark.parametrize("embedding", ["one_hot", "learned"])
def test_mlp_matches_a_plain_pytorch_mlp(embedding: str) -> None:
    p, width = 7, 16
    config = MLPModel(width=width, depth=2, activation="gelu", embedding=embedding, embedding_dim=5)
    data = make_data(RunConfig().task.model_copy(update={"modulus": p}), 0)
    model = MLP(config, vocab=p, input_dim=2, n_classes=p)
    params = model.init(seed=3, dtype=torch.float64)
    x = data.x_train[:20]
    if embedding == "one_hot":
        inputs = torch.cat(
            [torch.nn.functional.one_hot(x[:, 0], p), torch.nn.functional.one_hot(x[:, 1], p)], 1
        ).double()
    else:
        inputs = params["W_E"][x].reshape(len(x), -1)
    h = torch.nn.functional.gelu(inputs @ params["W_in"] + params["b_in"])
    h = torch.nn.functional.gelu(h @ params["W_h1"] + params["b_h1"])
    expected = h @ params["W_out"] + params["b_out"]
    got = model.forward({n: v[None] for n, v in params.items()}, x[None])[0]
    torch.testing.assert_close(got, expected)


def test_tiny_modular_run_groks(tiny_modular: RunConfig) -> None:
    (result,) = train_stack([("a", tiny_modular)])
    assert result.memorized_step is not None and result.generalized_step is not None
    # Grokking: memorization first, generalization clearly later.
    assert result.generalized_step >= result.memorized_step + 30
    assert result.final["test_acc"] == 1.0 and result.status == "completed"


def test_a_diverging_run_stops_and_the_others_continue(tiny_modular: RunConfig) -> None:
    bad = tiny_modular.model_copy(
        update={"optimizer": tiny_modular.optimizer.model_copy(update={"name": "sgd", "lr": 1e6, "betas": (0.9, 0.98)})}
    )
    good = tiny_modular.model_copy(
        update={"optimizer": tiny_modular.optimizer.model_copy(update={"name": "sgd", "lr": 0.05})}
    )
    train = tiny_modular.train.model_copy(update={"steps": 50})
    results = {
        r.run_id: r
        for r in train_stack(
            [("bad", bad.model_copy(update={"train": train})), ("good", good.model_copy(update={"train": train}))]
        )
    }
    assert results["bad"].status == "diverged" and results["bad"].steps < 50
    assert results["good"].status == "completed" and results["good"].steps == 50


def test_stop_after_generalized_stops_that_run_only(tiny_modular: RunConfig) -> None:
    stopping = tiny_modular.model_copy(
        update={"train": tiny_modular.train.model_copy(update={"stop_after_generalized": 20})}
    )
    results = {
        r.run_id: r for r in train_stack([("stop", stopping), ("full", tiny_modular.model_copy(update={"seed": 1}))])
    }
    stop = results["stop"]
    assert stop.status == "stopped" and stop.generalized_step is not None
    assert stop.steps == stop.generalized_step + 20 and stop.metrics["step"][-1] == stop.steps
    assert results["full"].status == "completed" and results["full"].steps == 300


@pytest.mark.parametrize(("tf32", "precision"), [(True, "tf32"), (False, "ieee")])
def test_train_tf32_holds_while_the_stack_trains_and_is_put_back(
    tiny_modular: RunConfig, tf32: bool, precision: str
) -> None:
    """train.tf32 sets torch's float32 precision for matmuls and convolutions while the stack trains (torch's own
    default lets convolutions use TF32, so off means full float32 for both), and leaves what was there."""
    seen: set[tuple[str, str]] = set()

    class Looking(Listener):
        def on_evaluation(self, run_id: str, step: int, metrics: dict[str, float], milestones: list[str]) -> None:
            seen.add((torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision))

    before = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    train = tiny_modular.train.model_copy(update={"steps": 10, "tf32": tf32})
    (run,) = train_stack([("r0", tiny_modular.model_copy(update={"train": train}))], "cpu", Looking())
    assert seen == {(precision, precision)}
    assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == before
    assert run.params["train.tf32"] is tf32  # stored with the run
