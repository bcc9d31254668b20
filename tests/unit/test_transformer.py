"""The transformer: shortcuts equal the full computation, stacked == alone, hooks, and it groks.

(Logits and gradients against a reference nn.Module: test_oracles.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from groklab import RunConfig, train_stack
from groklab.engine.stack import Stack

MODELS = {
    "nanda": {"name": "transformer", "d_model": 32, "n_heads": 4, "d_mlp": 64},
    "power": {
        "name": "transformer",
        "d_model": 32,
        "n_heads": 4,
        "d_mlp": 64,
        "n_layers": 2,
        "layernorm": "post",
        "sequence": "a op b =",
        "positional": "sinusoidal",
        "init": "default",
        "mlp_bias": True,
        "unembed_bias": True,
    },
    "grokfast": {
        "name": "transformer",
        "d_model": 32,
        "n_heads": 4,
        "d_mlp": 64,
        "n_layers": 2,
        "layernorm": "pre_stream",
        "sequence": "a op b =",
        "activation": "gelu",
        "attn_bias": True,
    },
    "pre-ln-full-bias": {
        "name": "transformer",
        "d_model": 24,
        "n_heads": 3,
        "d_mlp": 48,
        "n_layers": 3,
        "layernorm": "pre",
        "attention": "full",
        "attn_bias": True,
        "activation": "gelu",
    },
}


def _config(model: dict, **train: object) -> RunConfig:
    return RunConfig.model_validate(
        {
            "task": {"name": "modular", "modulus": 13, "train_fraction": 0.5},
            "model": model,
            "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 1.0, "betas": [0.9, 0.98], "warmup_steps": 3},
            "train": {"steps": 20, "eval_every": 5, "dtype": "float64", **train},
        }
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shortcuts_equal_the_full_computation(name: str) -> None:
    stack = Stack([("a", _config(MODELS[name]))], torch.device("cpu"))
    for step in range(5):  # train a little so the weights are not at init
        stack.train_step(step)
    fast = stack.model.forward(stack.params, stack.runs.x_test)  # token table + last position only
    full, cache = stack.model.run_with_cache(stack.params, stack.runs.x_test)  # every position, no table
    torch.testing.assert_close(fast, full, rtol=1e-10, atol=1e-10)
    assert set(cache) == set(stack.model.hook_names())
    n_ctx = stack.model.n_ctx
    assert cache["blocks.0.attn.hook_pattern"].shape == (
        1,
        stack.runs.x_test.shape[1],
        stack.model.config.n_heads,
        n_ctx,
        n_ctx,
    )


def test_causal_pattern_never_looks_ahead() -> None:
    stack = Stack([("a", _config(MODELS["nanda"]))], torch.device("cpu"))
    _, cache = stack.model.run_with_cache(stack.params, stack.runs.x_test)
    pattern = cache["blocks.0.attn.hook_pattern"][0]  # (batch, head, q, k)
    assert torch.all(pattern.triu(diagonal=1) == 0)
    torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))


def test_hooks_can_ablate_activations() -> None:
    stack = Stack([("a", _config(MODELS["nanda"]))], torch.device("cpu"))
    params, x = stack.params, stack.runs.x_test
    clean = stack.model.forward(params, x)
    ablated = stack.model.forward(params, x, hooks={"blocks.0.hook_mlp_out": torch.zeros_like})
    assert not torch.allclose(clean, ablated)
    # Zeroing the MLP output leaves the attention-only path: embed + attention, unembedded.
    _, cache = stack.model.run_with_cache(params, x)
    resid_mid = cache["blocks.0.hook_resid_mid"][:, :, -1]
    expected = torch.bmm(resid_mid, params["W_U"])
    torch.testing.assert_close(ablated, expected)


@pytest.mark.parametrize("name", ["nanda", "power"])
def test_run_i_of_a_stack_equals_run_i_alone(name: str) -> None:
    model = {**MODELS[name], "dropout": 0.1 if name == "power" else 0.0}
    base = _config(model, batch_size=16 if name == "power" else None)
    runs = [
        ("r0", base),
        ("r1", base.model_copy(update={"seed": 1, "optimizer": base.optimizer.model_copy(update={"lr": 1e-3})})),
        ("r2", base.model_copy(update={"seed": 2, "task": base.task.model_copy(update={"label_noise": 0.2})})),
    ]
    stacked = {r.run_id: r for r in train_stack(runs)}
    for run_id, config in runs:
        (alone,) = train_stack([(run_id, config)])
        for key in ("train_loss", "test_loss"):
            np.testing.assert_allclose(stacked[run_id].metrics[key], alone.metrics[key], rtol=1e-9)
        for n, value in alone.state_dict.items():
            torch.testing.assert_close(stacked[run_id].state_dict[n], value, rtol=1e-9, atol=1e-12)
    assert stacked["r0"].final["train_loss"] != stacked["r1"].final["train_loss"]


def test_weights_are_named_as_transformerlens_names_them() -> None:
    (result,) = train_stack([("a", _config(MODELS["power"], steps=1))])
    names = set(result.state_dict)
    assert {
        "W_E",
        "W_U",
        "b_U",
        "blocks.1.attn.W_Q",
        "blocks.1.attn.W_O",
        "blocks.0.mlp.W_in",
        "blocks.0.ln1.w",
    } <= names
    assert "W_pos" not in names  # sinusoidal positions are not parameters
    assert result.state_dict["blocks.0.attn.W_Q"].shape == (4, 32, 8)  # (head, d_model, d_head)


def test_a_tiny_transformer_groks() -> None:
    config = RunConfig.model_validate(
        {
            "task": {"modulus": 23, "train_fraction": 0.7},
            "model": {"name": "transformer", "d_model": 32, "n_heads": 4, "d_mlp": 128},
            "optimizer": {"name": "adamw", "lr": 1e-2, "weight_decay": 1.0, "betas": [0.9, 0.98], "warmup_steps": 10},
            "train": {"steps": 600, "eval_every": 25, "stop_after_generalized": 0},
        }
    )
    (result,) = train_stack([("a", config)])
    assert result.memorized_step is not None and result.generalized_step is not None
    assert result.generalized_step >= result.memorized_step + 100  # memorizes first, generalizes much later
