"""Dropout and BatchNorm in the MLP (Doshi et al.'s regularizers): against torch.nn, stacked == alone, stored."""

from __future__ import annotations

import pytest
import torch

from groklab import MLP, MLPModel, RunConfig, load, make_data, run, train_stack
from groklab.models.mlp import batch_norm, dropout

from .test_engine import _assert_same, _variants


def test_batch_norm_matches_torch_batchnorm1d_per_run() -> None:
    torch.manual_seed(0)
    runs, batch, N = 3, 16, 5
    gamma, beta = torch.rand(runs, N) + 0.5, torch.randn(runs, N)
    running = torch.zeros(runs, N), torch.ones(runs, N)
    references = []
    for r in range(runs):
        bn = torch.nn.BatchNorm1d(N)
        with torch.no_grad():
            bn.weight.copy_(gamma[r]), bn.bias.copy_(beta[r])
        references.append(bn)
    for _ in range(3):  # training passes: batch statistics, running statistics updated
        h = torch.randn(runs, batch, N) * 3 + 1
        got = batch_norm(h, gamma, beta, running, training=True)
        for r, bn in enumerate(references):
            torch.testing.assert_close(got[r], bn.train()(h[r]))
            torch.testing.assert_close(running[0][r], bn.running_mean)
            torch.testing.assert_close(running[1][r], bn.running_var)
    h = torch.randn(runs, batch, N)
    got = batch_norm(h, gamma, beta, running, training=False)
    for r, bn in enumerate(references):
        torch.testing.assert_close(got[r], bn.eval()(h[r]))


def test_dropout_zeroes_at_the_rate_and_keeps_the_mean() -> None:
    h = torch.ones(2, 4000, 50)
    generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
    out = dropout(h, 0.3, generators)
    assert abs((out == 0).double().mean().item() - 0.3) < 0.01
    assert out.unique().tolist() == pytest.approx([0.0, 1 / 0.7])
    assert abs(out.mean().item() - 1.0) < 0.02
    assert not torch.equal(out[0], out[1])  # each run draws its own masks


def test_mlp_with_batchnorm_matches_a_plain_pytorch_mlp() -> None:
    p, width = 7, 16
    config = MLPModel(width=width, depth=2, activation="relu", batchnorm=True)
    data = make_data(RunConfig().task.model_copy(update={"modulus": p}), 0)
    model = MLP(config, vocab=p, input_dim=2, n_classes=p)
    params = model.init(seed=3, dtype=torch.float64)
    assert torch.equal(params["gamma_in"], torch.ones(width)) and torch.equal(params["beta_h1"], torch.zeros(width))
    params["gamma_in"], params["beta_in"] = torch.rand(width).double() + 0.5, torch.randn(width).double()
    reference = torch.nn.Sequential(
        torch.nn.Linear(2 * p, width), torch.nn.ReLU(), torch.nn.BatchNorm1d(width),
        torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.BatchNorm1d(width),
        torch.nn.Linear(width, p),
    ).double()  # fmt: skip
    with torch.no_grad():
        for i, name in ((0, "in"), (3, "h1")):
            reference[i].weight.copy_(params[f"W_{name}"].T), reference[i].bias.copy_(params[f"b_{name}"])
            reference[i + 2].weight.copy_(params[f"gamma_{name}"]), reference[i + 2].bias.copy_(params[f"beta_{name}"])
        reference[6].weight.copy_(params["W_out"].T), reference[6].bias.copy_(params["b_out"])
    x = data.x_train[:20]
    one_hot = torch.cat([torch.nn.functional.one_hot(x[:, 0], p), torch.nn.functional.one_hot(x[:, 1], p)], 1)
    stacked = {n: v[None] for n, v in params.items()}
    buffers = model.buffers([0], torch.device("cpu"), torch.float64)
    training = [torch.Generator()]  # a training pass (no dropout: the generators only say "training")
    torch.testing.assert_close(
        model.forward(stacked, x[None], buffers=buffers, generators=training)[0], reference.train()(one_hot.double())
    )
    torch.testing.assert_close(model.forward(stacked, x[None], buffers=buffers)[0], reference.eval()(one_hot.double()))


def test_run_i_of_a_stack_equals_run_i_alone_with_dropout_and_batchnorm(tiny_modular: RunConfig, device: str) -> None:
    base = tiny_modular.model_copy(
        update={
            "model": tiny_modular.model.model_copy(update={"dropout": 0.1, "batchnorm": True}),
            "train": tiny_modular.train.model_copy(update={"steps": 40, "batch_size": 64}),
        }
    )
    runs = _variants(base)
    # r1 stops at step 20: the stack cuts its rows out of the running statistics and generators too.
    r1 = runs[1][1]
    runs[1] = ("r1", r1.model_copy(update={"train": r1.train.model_copy(update={"steps": 20})}))
    stacked = {r.run_id: r for r in train_stack(runs, device)}
    assert stacked["r1"].steps == 20 and stacked["r0"].steps == 40
    for run_id, config in runs:
        _assert_same(stacked[run_id], train_stack([(run_id, config)], device)[0])
    plain = tiny_modular.model_copy(update={"train": base.train})
    # The regularizer really acts: the same run without it trains differently.
    assert train_stack([("r0", plain)], device)[0].final["train_loss"] != stacked["r0"].final["train_loss"]


def test_batchnorm_runs_store_their_running_statistics(tmp_path, tiny_modular: RunConfig) -> None:  # type: ignore[no-untyped-def]
    spec = {
        **tiny_modular.model_dump(),
        "model": {**tiny_modular.model.model_dump(), "batchnorm": True},
        "train": {**tiny_modular.train.model_dump(), "steps": 30},
    }
    spec.pop("seed")
    spec.pop("variant")  # a run's own fields, not spec keys
    spec.pop("measures", None)
    result = run(spec, out=tmp_path / "bn", progress=False)
    run_id = result.runs["run_id"][0]
    model, params, buffers = load(tmp_path / "bn").model(run_id)
    assert set(buffers) == {"running_mean_in", "running_var_in"} and "gamma_in" in params
    data = load(tmp_path / "bn").data(run_id)
    logits = model.forward(params, torch.from_numpy(data["x_test"])[None], buffers=buffers)[0]
    accuracy = (logits.argmax(-1).numpy() == data["y_test"]).mean()
    assert accuracy == pytest.approx(result.runs["final_test_acc"][0])
    # batchnorm_gain (default with BatchNorm): gain = |gamma| / sqrt(running_var + eps) per neuron, as stored.
    gain = load(tmp_path / "bn").series(run_id)["batchnorm_gain"]
    expected = params["gamma_in"][0].abs() / (buffers["running_var_in"][0] + 1e-5).sqrt()
    torch.testing.assert_close(torch.as_tensor(gain), expected)
    assert -1.0 <= result.runs["batchnorm_gain_ipr"][0] <= 1.0
