"""groklab's models against reference oracles: plain per-run nn.Modules written the obvious way.

For every model option (transformer: 1-3 layers, LayerNorm none/pre/post/pre_stream, LayerNorm or RMSNorm,
learned/sinusoidal/rotary positions, causal/full attention, Zhong et al.'s attention rate, standard or gated MLP,
tied or untied embeddings, each bias on/off, both sequence formats, every activation; MLP: one-hot, learned,
summed and vector inputs, depth 1-3, bias on/off, both sequence formats, every activation, BatchNorm in
evaluation mode, the linear and the templates readout), the logits and the gradients of a stack of two trained runs equal each run's oracle — through the
exact shortcuts (what training runs) and through the plain every-position model.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from groklab import RunConfig
from groklab.engine.stack import Stack
from groklab.losses import per_run_loss
from groklab.models import MLP, Transformer, reference_model

TRANSFORMERS = {  # each option value appears at least once; each shortcut path is taken
    "1L none learned causal a-b-= relu": {},
    "1L pre sinusoidal full a-op-b-= gelu biases": {
        "layernorm": "pre",
        "positional": "sinusoidal",
        "attention": "full",
        "sequence": "a op b =",
        "activation": "gelu",
        "attn_bias": True,
        "unembed_bias": True,
    },
    "1L post learned causal a-op-b-= identity no-bias": {
        "layernorm": "post",
        "sequence": "a op b =",
        "activation": "identity",
        "mlp_bias": False,
    },
    "2L post sinusoidal causal a-op-b-= (shared prefix)": {
        "n_layers": 2,
        "layernorm": "post",
        "positional": "sinusoidal",
        "sequence": "a op b =",
        "unembed_bias": True,
        "init": "default",
    },
    "2L pre learned causal a-b-= silu attn-bias": {
        "n_layers": 2,
        "layernorm": "pre",
        "activation": "silu",
        "attn_bias": True,
    },
    "2L none learned full a-op-b-= tanh": {
        "n_layers": 2,
        "attention": "full",
        "sequence": "a op b =",
        "activation": "tanh",
    },
    "2L post learned full a-b-= quadratic biases": {
        "n_layers": 2,
        "layernorm": "post",
        "attention": "full",
        "activation": "quadratic",
        "attn_bias": True,
        "unembed_bias": True,
    },
    "2L pre_stream learned causal a-op-b-= gelu biases (Grokfast's block, shared prefix)": {
        "n_layers": 2,
        "layernorm": "pre_stream",
        "sequence": "a op b =",
        "activation": "gelu",
        "attn_bias": True,
    },
    "1L pre_stream learned full a-b-=": {"layernorm": "pre_stream", "attention": "full"},
    "1L modern: rmsnorm pre, rotary, swiglu, tied": {
        "layernorm": "pre",
        "norm": "rmsnorm",
        "positional": "rotary",
        "mlp": "gated",
        "activation": "silu",
        "tie_embeddings": True,
    },
    "2L modern: rmsnorm post, rotary full, gated gelu biases, tied with b_U": {
        "n_layers": 2,
        "layernorm": "post",
        "norm": "rmsnorm",
        "positional": "rotary",
        "attention": "full",
        "mlp": "gated",
        "activation": "gelu",
        "attn_bias": True,
        "tie_embeddings": True,
        "unembed_bias": True,
    },
    "1L full, attention rate 0.3 (Zhong et al.)": {"attention": "full", "attention_rate": 0.3},
    "2L causal a-op-b-=, constant attention (rate 0), pre_stream rmsnorm": {
        "n_layers": 2,
        "sequence": "a op b =",
        "attention_rate": 0.0,
        "layernorm": "pre_stream",
        "norm": "rmsnorm",
    },
    "2L modern causal a-op-b-= (the shared prefix, its keys turned)": {
        "n_layers": 2,
        "sequence": "a op b =",
        "layernorm": "pre",
        "norm": "rmsnorm",
        "positional": "rotary",
        "mlp": "gated",
        "activation": "silu",
    },
    "3L pre sinusoidal causal a-op-b-= sigmoid (shared prefix)": {
        "n_layers": 3,
        "layernorm": "pre",
        "positional": "sinusoidal",
        "sequence": "a op b =",
        "activation": "sigmoid",
        "mlp_bias": False,
    },
}
MLPS = {
    "one-hot depth 1 quadratic no-bias (Gromov)": {"activation": "quadratic", "bias": False, "init": "gromov"},
    "one-hot depth 2 relu a-op-b-=": {"depth": 2, "sequence": "a op b ="},
    "learned depth 2 gelu a-op-b-=": {"depth": 2, "embedding": "learned", "sequence": "a op b =", "activation": "gelu"},
    "learned depth 1 tanh no-bias": {"embedding": "learned", "activation": "tanh", "bias": False},
    "one-hot depth 2 sigmoid batchnorm dropout": {
        "depth": 2,
        "activation": "sigmoid",
        "batchnorm": True,
        "dropout": 0.2,
    },
    "one-hot depth 1 identity": {"activation": "identity"},
    "parity depth 1 relu": {"parity": True},
    "parity depth 3 silu batchnorm": {"parity": True, "depth": 3, "activation": "silu", "batchnorm": True},
    "summed depth 2 tanh templates (Liu's toy)": {
        "addition": True,
        "depth": 2,
        "embedding": "summed",
        "activation": "tanh",
        "init": "liu",
        "readout": "templates",
        "template_dim": 5,
    },
    "summed depth 1 relu (addition, logits)": {"addition": True, "embedding": "summed"},
    "parity depth 2 near-linear paired, output scale 3 (Kumar et al.)": {
        "parity": True,
        "depth": 2,
        "activation": "near_linear",
        "paired": True,
        "output_scale": 3.0,
    },
}
PARITY = {"name": "parity", "n_bits": 10, "k": 2, "n_train": 40, "n_test": 20}
MODULAR = {"name": "modular", "modulus": 7, "train_fraction": 0.5}
ADDITION = {"name": "addition", "operands": 6, "n_train": 14}


def _trained_stack(task: dict, model: dict) -> Stack:
    """Two runs (different seeds and learning rates) after a few steps, so no weight is at its init."""
    config = {
        "task": task,
        "model": model,
        "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 0.1},
        "train": {"loss": "mse" if model.get("readout") == "templates" else "cross_entropy", "dtype": "float32"},
    }
    first = RunConfig.model_validate(config)
    second = first.model_copy(update={"seed": 1, "optimizer": first.optimizer.model_copy(update={"lr": 0.02})})
    stack = Stack([("a", first), ("b", second)], torch.device("cpu"))
    for step in range(4):
        stack.train_step(step)
    return stack


def _assert_model_equals_oracles(stack: Stack, forward: object) -> None:
    """forward(params, x) (logits of the stack) and its gradients equal each run's oracle."""
    params = {n: p.detach().clone().requires_grad_() for n, p in stack.params.items()}
    x, y = stack.runs.x_train, stack.runs.y_train
    logits = forward(params, x)  # type: ignore[operator]
    grads = torch.autograd.grad(per_run_loss(logits, y, "cross_entropy").sum(), list(params.values()))
    for run in range(2):
        oracle = reference_model(stack.model, params, run, stack.runs.buffers)
        expected = oracle(x[run])
        torch.testing.assert_close(logits[run], expected, rtol=1e-5, atol=1e-5)
        F.cross_entropy(expected, y[run]).backward()
        expected_grads = oracle.stack_layout(oracle.grads())
        assert set(expected_grads) == set(params)  # every parameter checked
        for (name, _), grad in zip(params.items(), grads):
            torch.testing.assert_close(grad[run], expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert not torch.allclose(logits[0], logits[1])  # the two runs really differ


@pytest.mark.parametrize("case", sorted(TRANSFORMERS))
def test_transformer_equals_its_oracle(case: str) -> None:
    model = {"name": "transformer", "d_model": 16, "n_heads": 2, "d_mlp": 32, **TRANSFORMERS[case]}
    stack = _trained_stack(MODULAR, model)
    _assert_model_equals_oracles(stack, stack.model.forward)  # through the exact shortcuts
    plain = Transformer(stack.model.config, stack.model.vocab, stack.model.n_classes)
    _assert_model_equals_oracles(stack, plain.forward)  # every position, no shortcut


@pytest.mark.parametrize("case", sorted(MLPS))
def test_mlp_equals_its_oracle(case: str) -> None:
    options = dict(MLPS[case])
    task = PARITY if options.pop("parity", False) else ADDITION if options.pop("addition", False) else MODULAR
    stack = _trained_stack(task, {"name": "mlp", "width": 24, "embedding_dim": 6, **options})
    assert isinstance(stack.model, MLP)

    def evaluate(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:  # BatchNorm: running stats
        return stack.model.forward(params, x, buffers=stack.runs.buffers)

    _assert_model_equals_oracles(stack, evaluate)


def test_mlp_hook_points_read_and_replace_activations() -> None:
    stack = _trained_stack(MODULAR, {"name": "mlp", "width": 24, "depth": 2, "batchnorm": True})
    model, params, x = stack.model, stack.params, stack.runs.x_test
    logits, cache = model.run_with_cache(params, x, buffers=stack.runs.buffers)
    assert list(cache) == model.hook_names()
    W_in, b_in, p = params["W_in"].detach(), params["b_in"].detach(), model.vocab
    for run in range(2):  # one-hot (a, b) @ W_in + b_in == W_in[a] + W_in[p + b] + b_in
        expected = W_in[run, x[run, :, 0]] + W_in[run, p + x[run, :, 1]] + b_in[run]
        torch.testing.assert_close(cache["blocks.0.mlp.hook_pre"][run], expected)
    ablated = model.forward(params, x, {model.readout_input: torch.zeros_like}, buffers=stack.runs.buffers)
    torch.testing.assert_close(ablated, params["b_out"][:, None].expand_as(logits))  # nothing reaches the readout
