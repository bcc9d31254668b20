"""The MLP of Gromov 2023 (one-hot a, b concatenated -> W_in -> x^2 -> W_out), of the parity papers, and
Liu et al. 2022's toy (W_E[a] + W_E[b] -> tanh MLP -> a vector compared with fixed label templates).

Parameters carry a leading run axis: W_in is (run, d_in, N), so K runs train as one batched model.
Names: W_E (learned token embedding, p x d_embed), W_in (input -> first hidden layer), W_h{i} (hidden
layer i -> i+1, for depth > 1), W_out (last hidden layer -> logits); b_* their biases; with BatchNorm,
gamma_* and beta_* its scale and shift after the layer of the same suffix, and the running statistics
running_mean_* / running_var_* (buffers: not trained, kept by the stack next to the parameters); with the
templates readout, the fixed label templates T_labels (n_classes x template_dim, a buffer drawn per seed).

Hook points (TransformerLens names; hidden layer i is block i): hook_embed (learned embeddings, (run, batch,
tokens, d_embed)); blocks.{i}.mlp.hook_pre (pre-activations, (run, batch, N)); blocks.{i}.mlp.hook_post
(after the activation); blocks.{i}.hook_normalized (after BatchNorm); blocks.{i}.hook_out (the layer's
output, after dropout: what the next layer or the readout reads); hook_output (the templates readout's vector,
(run, batch, template_dim)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from groklab.config import MLPModel
from groklab.models.layers import ACTIVATIONS, Hooks, Params, batch_norm, dropout, hook, linear, named_matrices
from groklab.models.protocol import run_with_cache
from groklab.seeds import derive_seed


class MLP:
    """An MLP over token pairs (one-hot or learned embedding) or over vectors, with a run axis.

    Forward: h_0 = input layer(x); h_i = act(h_{i-1} W_h{i} + b_h{i}); logits = h_depth W_out + b_out.
    """

    def __init__(self, config: MLPModel, vocab: int | None, input_dim: int, n_classes: int) -> None:
        self.config = config
        self.operands = vocab  # p: operand values (and classes of a table task)
        self.sequence = vocab is not None and config.sequence == "a op b ="
        # "a op b =": tokens op = p and "=" = p + 1 join the vocabulary, four tokens per example.
        vocab = vocab + 2 if self.sequence and vocab is not None else vocab
        input_dim = 4 if self.sequence else input_dim
        self.vocab = vocab
        self.n_tokens = input_dim if vocab is not None else 0
        self.n_classes = n_classes
        if vocab is None:
            self.d_in = input_dim
        elif config.embedding == "one_hot":
            self.d_in = self.n_tokens * vocab
        elif config.embedding == "summed":
            self.d_in = config.embedding_dim
        else:
            self.d_in = self.n_tokens * config.embedding_dim
        self.embeds = vocab is not None and config.embedding != "one_hot"  # a learned W_E
        self.templates = config.readout == "templates"
        self.n_out = config.template_dim if self.templates else n_classes  # W_out's outputs
        self.act = ACTIVATIONS[config.activation]
        self.layer_names = ["in"] + [f"h{i}" for i in range(1, config.depth)]  # parameter suffix of each layer
        self.readout: tuple[str, ...] = ("W_out", "b_out") if config.bias else ("W_out",)
        self.readout_input = f"blocks.{config.depth - 1}.hook_out"
        self.feature_hooks = tuple(f"blocks.{i}.hook_out" for i in range(config.depth))
        self.neuron_output = "W_out" if config.depth == 1 else "W_h1"  # rows: the first hidden layer's neurons
        self.neuron_hook = "blocks.0.mlp.hook_pre"
        # Token inputs: W_E, or W_in itself when one-hot inputs gather its rows (a table of token vectors).
        self.embeddings: tuple[str, ...] = ("W_E",) if self.embeds else ("W_in",) if vocab is not None else ()
        self.neurons_from_weights = vocab is not None and config.embedding == "one_hot"
        self.trains_differently = config.dropout > 0 or config.batchnorm

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs as the model consumes them: operand pairs, or "a op b =" sequences (..., 4); vectors as is.

        >>> from groklab.config import MLPModel
        >>> MLP(MLPModel(sequence="a op b =", embedding="learned"), 7, 2, 7).prepare(torch.tensor([[3, 5]]))
        tensor([[3, 7, 5, 8]])
        """
        if not self.sequence:
            return x
        a, b = x[..., :1], x[..., 1:]
        p = self.operands
        assert p is not None  # a sequence is made of operand tokens
        return torch.cat([a, torch.full_like(a, p), b, torch.full_like(a, p + 1)], dim=-1)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape of one run (no run axis)."""
        c, shapes = self.config, dict[str, tuple[int, ...]]()
        if self.embeds:
            assert self.vocab is not None  # only token inputs are embedded
            shapes["W_E"] = (self.vocab, c.embedding_dim)
        dims = [self.d_in] + [c.width] * c.depth
        for name, fan_in, fan_out in zip(self.layer_names, dims[:-1], dims[1:]):
            shapes[f"W_{name}"] = (fan_in, fan_out)
            if c.bias:
                shapes[f"b_{name}"] = (fan_out,)
            if c.batchnorm:
                shapes[f"gamma_{name}"], shapes[f"beta_{name}"] = (fan_out,), (fan_out,)
        shapes["W_out"] = (c.width, self.n_out)
        if c.bias:
            shapes["b_out"] = (self.n_out,)
        return shapes

    def init(self, seed: int, dtype: torch.dtype = torch.float32) -> Params:
        """Parameters of one run, drawn on the CPU from the run's own init stream (device-independent)."""
        generator = torch.Generator().manual_seed(derive_seed(seed, "init"))
        shapes, params = self.shapes(), {}
        for name, shape in shapes.items():
            fan_in = (shapes["W_" + name[2:]] if name.startswith("b_") else shape)[0]
            if name.startswith(("gamma_", "beta_")):  # BatchNorm starts as the identity: gamma 1, beta 0
                values = torch.full(shape, 1.0 if name.startswith("gamma_") else 0.0, dtype=torch.float64)
            elif name == "W_E" and self.config.init == "liu":  # (torch.rand(p, d) - 1/2), as toy/train_add.py
                values = torch.rand(shape, generator=generator, dtype=torch.float64) - 0.5
            elif name == "W_E":
                values = torch.randn(shape, generator=generator, dtype=torch.float64)
            elif self.config.init == "gromov" and name in ("W_in", "W_out"):
                std = 0.25**0.5 / (2 * self.config.width) ** (1 / 3)
                values = torch.randn(shape, generator=generator, dtype=torch.float64) * std
            elif self.config.init == "mean_field":  # h_i = w_i . x ~ N(0, |x|^2 / D), f = mean_i phi(h_i)
                if name == "W_out":
                    values = torch.full(shape, 1.0 / self.config.width, dtype=torch.float64)
                elif name.startswith("W_"):
                    values = torch.randn(shape, generator=generator, dtype=torch.float64) / math.sqrt(fan_in)
                else:
                    values = torch.zeros(shape, dtype=torch.float64)
            else:  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
                bound = 1.0 / math.sqrt(fan_in)
                values = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            params[name] = (values * self.config.init_scale).to(dtype)
        if self.config.paired:  # the output at init is exactly 0: neuron j + N/2 cancels neuron j
            half, last = self.config.width // 2, self.layer_names[-1]
            for name in (f"W_{last}", f"b_{last}"):
                if name in params:
                    params[name][..., half:] = params[name][..., :half].clone()
            params["W_out"][half:] = -params["W_out"][:half]
            if "b_out" in params:
                params["b_out"].zero_()
        return params

    def buffers(self, seeds: list[int], device: torch.device, dtype: torch.dtype) -> Params:
        """What is not trained, for runs with these seeds: the BatchNorm running statistics as torch.nn.BatchNorm1d
        starts them (mean 0, var 1), and the label templates T_labels (run, n_classes, template_dim), N(0, 1)
        from each run's own templates stream (Liu et al.'s y_templates)."""
        buffers: Params = {}
        if self.config.batchnorm:
            shape = (len(seeds), self.config.width)
            for name in self.layer_names:
                buffers[f"running_mean_{name}"] = torch.zeros(shape, device=device, dtype=dtype)
                buffers[f"running_var_{name}"] = torch.ones(shape, device=device, dtype=dtype)
        if self.templates:
            buffers["T_labels"] = torch.stack([self.label_templates(seed, dtype) for seed in seeds]).to(device)
        return buffers

    def label_templates(self, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(n_classes, template_dim) the fixed random target of each class, N(0, 1), one draw per seed."""
        generator = torch.Generator().manual_seed(derive_seed(seed, "templates"))
        shape = (self.n_classes, self.config.template_dim)
        return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)

    def layout(self, params: Params) -> Params:
        """The same values, with W_out and W_h* (run, d_in, d_out) stored d_out-major, as nn.Linear stores them.

        Shapes and names do not change; only the memory order does. BLAS is up to 3x faster on the
        narrow readout (N x 2 for parity) in this order, forward and backward (benchmarks/bench_engine.py).
        W_in and W_E stay row-major: token inputs gather their rows.
        """
        return {
            name: W.transpose(1, 2).contiguous().transpose(1, 2) if name == "W_out" or name.startswith("W_h") else W
            for name, W in params.items()
        }

    # -- forward -----------------------------------------------------------------------------------

    def forward(
        self,
        params: Params,
        x: torch.Tensor,
        hooks: Hooks | None = None,
        *,
        buffers: Params | None = None,
        generators: list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Logits (run, batch, n_classes) for inputs x (run, batch, tokens) or (run, batch, n_bits).

        generators: one per run for a training pass (dropout masks; BatchNorm uses the batch's statistics
        and updates `buffers` in place); None for evaluation (no dropout; BatchNorm uses `buffers`).
        With the templates readout the logits are the scores -mean_d (y_d - T_cd)^2 of the output y.
        """
        hooks = hooks or {}
        h = self._layer_output(params, 0, self._input_layer(params, x, hooks), hooks, generators, buffers)
        for i in range(1, self.config.depth):
            pre = linear(h, params[f"W_h{i}"], params.get(f"b_h{i}"))  # (run, batch, N)
            h = self._layer_output(params, i, pre, hooks, generators, buffers)
        out = linear(h, params["W_out"], params.get("b_out"))
        if buffers is not None and "output_scale" in buffers:  # lazy vs rich training: alpha f(x), per run
            out = out * buffers["output_scale"][:, None, None]
        if not self.templates:
            return out
        if buffers is None:
            raise ValueError("an MLP with the templates readout needs its label templates (buffers) to run")
        out = hook(hooks, "hook_output", out)  # (run, batch, template_dim)
        # The difference itself, not |y|^2 - 2 y.T + |T|^2: the true class's score is exactly the paper's MSE.
        return -(out[:, :, None, :] - buffers["T_labels"][:, None]).square().mean(dim=-1)

    def _input_layer(self, params: Params, x: torch.Tensor, hooks: Hooks) -> torch.Tensor:
        """Pre-activations of the first hidden layer: (run, batch, ...) -> (run, batch, N)."""
        W_in = params["W_in"]  # (run, d_in, N)
        runs, batch = x.shape[:2]
        b_in = params["b_in"] if self.config.bias else None
        if self.vocab is None:
            h = linear(x.to(W_in.dtype), W_in, b_in)  # (run, batch, N)
        elif self.config.embedding == "one_hot":
            # one_hot(a) | one_hot(b) @ W_in == W_in[a] + W_in[p + b]: a gather-sum, no one-hot matmul.
            offsets = torch.arange(self.n_tokens, device=x.device) * self.vocab  # (tokens,)
            run_offsets = torch.arange(runs, device=x.device)[:, None, None] * self.d_in  # (run, 1, 1)
            rows = (x + offsets + run_offsets).reshape(runs * batch, self.n_tokens)
            h = F.embedding_bag(rows, W_in.reshape(runs * self.d_in, -1), mode="sum").view(runs, batch, -1)
            h = h if b_in is None else h + b_in[:, None, :]
        else:
            W_E = params["W_E"]  # (run, p, d_embed)
            run_offsets = torch.arange(runs, device=x.device)[:, None, None] * self.vocab
            embedded = F.embedding(x + run_offsets, W_E.reshape(runs * self.vocab, -1))  # (run, batch, tokens, d)
            embedded = hook(hooks, "hook_embed", embedded)
            joined = embedded.sum(dim=2) if self.config.embedding == "summed" else embedded.reshape(runs, batch, -1)
            h = linear(joined, W_in, b_in)  # (run, batch, N)
        return h

    def _layer_output(
        self,
        params: Params,
        i: int,
        pre: torch.Tensor,
        hooks: Hooks,
        generators: list[torch.Generator] | None,
        buffers: Params | None,
    ) -> torch.Tensor:
        """Hidden layer i's output from its pre-activations: activation, then BatchNorm, then dropout."""
        layer, block = self.layer_names[i], f"blocks.{i}."
        h = hook(hooks, block + "mlp.hook_post", self.act(hook(hooks, block + "mlp.hook_pre", pre)))
        if self.config.batchnorm:
            if buffers is None:
                raise ValueError("an MLP with BatchNorm needs its running statistics (buffers) to run")
            running = buffers[f"running_mean_{layer}"], buffers[f"running_var_{layer}"]
            h = batch_norm(h, params[f"gamma_{layer}"], params[f"beta_{layer}"], running, generators is not None)
            h = hook(hooks, block + "hook_normalized", h)
        return hook(hooks, block + "hook_out", dropout(h, self.config.dropout, generators))

    def run_with_cache(
        self, params: Params, x: torch.Tensor, *, buffers: Params | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Evaluation-mode logits and every hooked activation (no gradients)."""
        return run_with_cache(self, params, x, buffers)

    def hook_names(self) -> list[str]:
        """Every hook point, in the order the forward pass reaches them."""
        names = ["hook_embed"] if self.embeds else []
        for i in range(self.config.depth):
            names += [f"blocks.{i}.mlp.hook_pre", f"blocks.{i}.mlp.hook_post"]
            names += [f"blocks.{i}.hook_normalized"] if self.config.batchnorm else []
            names += [f"blocks.{i}.hook_out"]
        return names + (["hook_output"] if self.templates else [])

    # -- what the measures read ----------------------------------------------------------------------

    def at_readout(self, activation: torch.Tensor) -> torch.Tensor:
        """An MLP's activations have no position axis: (run, batch, d) as they are."""
        return activation

    def neuron_weights(self, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """First hidden layer: incoming (run, N, d_in) and outgoing (run, N, fan_out) weights per neuron."""
        return params["W_in"].transpose(1, 2), params[self.neuron_output]

    def silence_neurons(self, params: Params, keep: torch.Tensor) -> Params:
        """The parameters with the first hidden layer's neurons where keep (run, N) is 0 cut off: their rows of
        W_out (depth 1) or W_h1 zeroed."""
        return {**params, self.neuron_output: params[self.neuron_output] * keep[:, :, None]}

    def matrices(self, params: Params) -> dict[str, torch.Tensor]:
        """W_E, W_in, W_h*, W_out: (run, fan_in, fan_out) as they are stored."""
        return named_matrices(params)

    def operand_embeddings(self, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """How the network first represents operands a and b: (run, p, d) each.

        One-hot: the blocks of W_in that a and b select (the first layer's pre-activation is W_in[a] +
        W_in[V + b], V the vocabulary; "a op b =": b is the third token); learned and summed: the embedding W_E.
        """
        p = self.operands
        if self.config.embedding == "one_hot":
            V, b_block = self.vocab, (2 if self.sequence else 1)
            W_in = params["W_in"]
            return W_in[:, :p], W_in[:, b_block * V : b_block * V + p]  # type: ignore[operator]
        W_E = params["W_E"][:, :p]
        return W_E, W_E
