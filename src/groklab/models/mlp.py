"""The MLP of Gromov 2023 (one-hot a, b concatenated -> W_in -> x^2 -> W_out) and of the parity papers.

Parameters carry a leading run axis: W_in is (run, d_in, N), so K runs train as one batched model.
Names: W_E (learned token embedding, p x d_embed), W_in (input -> first hidden layer), W_h{i} (hidden
layer i -> i+1, for depth > 1), W_out (last hidden layer -> logits); b_* their biases; with BatchNorm,
gamma_* and beta_* its scale and shift after the layer of the same suffix, and the running statistics
running_mean_* / running_var_* (buffers: not trained, kept by the stack next to the parameters).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from groklab.config import MLPModel
from groklab.data.dataset import derive_seed

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "quadratic": lambda h: h * h,  # not torch.square: pow backward is ~5x slower on CPU
    "relu": torch.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "silu": F.silu,
    "identity": lambda h: h,
}


def linear(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """h (run, batch, d_in) @ W (run, d_in, d_out) + b (run, d_out), fused into one matmul call.

    A stack of one run uses addmm/mm on the squeezed tensors: ~15% faster than bmm on CPU.
    """
    if h.shape[0] == 1:
        # squeeze, not [0]: its backward is a view, while select's backward allocates and fills zeros.
        h, W = h.squeeze(0), W.squeeze(0)
        out = torch.mm(h, W) if b is None else torch.addmm(b.squeeze(0), h, W)
        return out.unsqueeze(0)
    return torch.bmm(h, W) if b is None else torch.baddbmm(b.unsqueeze(1), h, W)


def linear_layout(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same values, with W_out and W_h* (run, d_in, d_out) stored d_out-major, as nn.Linear stores them.

    Shapes and names do not change; only the memory order does. BLAS is up to 3x faster on the
    narrow readout (N x 2 for parity) in this order, forward and backward (benchmarks/bench_engine.py).
    W_in and W_E stay row-major: token inputs gather their rows.
    """
    return {
        name: W.transpose(1, 2).contiguous().transpose(1, 2) if name == "W_out" or name.startswith("W_h") else W
        for name, W in params.items()
    }


def stack_params(per_run: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """[{name: (...)}] * K -> {name: (K, ...)}."""
    return {name: torch.stack([p[name] for p in per_run]) for name in per_run[0]}


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
        else:
            self.d_in = self.n_tokens * config.embedding_dim
        self.act = ACTIVATIONS[config.activation]

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
        return torch.cat([a, torch.full_like(a, p), b, torch.full_like(a, p + 1)], dim=-1)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape of one run (no run axis)."""
        c, shapes = self.config, {}
        if self.vocab is not None and c.embedding == "learned":
            shapes["W_E"] = (self.vocab, c.embedding_dim)
        dims = [self.d_in] + [c.width] * c.depth
        names = ["in"] + [f"h{i}" for i in range(1, c.depth)]
        for name, fan_in, fan_out in zip(names, dims[:-1], dims[1:]):
            shapes[f"W_{name}"] = (fan_in, fan_out)
            if c.bias:
                shapes[f"b_{name}"] = (fan_out,)
            if c.batchnorm:
                shapes[f"gamma_{name}"], shapes[f"beta_{name}"] = (fan_out,), (fan_out,)
        shapes["W_out"] = (c.width, self.n_classes)
        if c.bias:
            shapes["b_out"] = (self.n_classes,)
        return shapes

    def init(self, seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Parameters of one run, drawn on the CPU from the run's own init stream (device-independent)."""
        generator = torch.Generator().manual_seed(derive_seed(seed, "init"))
        shapes, params = self.shapes(), {}
        for name, shape in shapes.items():
            fan_in = (shapes["W_" + name[2:]] if name.startswith("b_") else shape)[0]
            if name.startswith(("gamma_", "beta_")):  # BatchNorm starts as the identity: gamma 1, beta 0
                values = torch.full(shape, 1.0 if name.startswith("gamma_") else 0.0, dtype=torch.float64)
            elif name == "W_E":
                values = torch.randn(shape, generator=generator, dtype=torch.float64)
            elif self.config.init == "gromov" and name in ("W_in", "W_out"):
                std = 0.25**0.5 / (2 * self.config.width) ** (1 / 3)
                values = torch.randn(shape, generator=generator, dtype=torch.float64) * std
            else:  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
                bound = 1.0 / math.sqrt(fan_in)
                values = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            params[name] = (values * self.config.init_scale).to(dtype)
        return params

    def buffers(self, runs: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The BatchNorm running statistics of `runs` runs, as torch.nn.BatchNorm1d starts them (mean 0, var 1)."""
        if not self.config.batchnorm:
            return {}
        names = ["in"] + [f"h{i}" for i in range(1, self.config.depth)]
        shape = (runs, self.config.width)
        return {
            f"{stat}_{name}": torch.full(shape, value, device=device, dtype=dtype)
            for name in names
            for stat, value in (("running_mean", 0.0), ("running_var", 1.0))
        }

    def input_layer(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Pre-activations of the first hidden layer: (run, batch, ...) -> (run, batch, N)."""
        W_in = params["W_in"]  # (run, d_in, N)
        runs, batch = x.shape[:2]
        b_in = params["b_in"] if self.config.bias else None
        if self.vocab is None:
            return linear(x.to(W_in.dtype), W_in, b_in)  # (run, batch, N)
        elif self.config.embedding == "one_hot":
            # one_hot(a) | one_hot(b) @ W_in == W_in[a] + W_in[p + b]: a gather-sum, no one-hot matmul.
            offsets = torch.arange(self.n_tokens, device=x.device) * self.vocab  # (tokens,)
            run_offsets = torch.arange(runs, device=x.device)[:, None, None] * self.d_in  # (run, 1, 1)
            rows = (x + offsets + run_offsets).reshape(runs * batch, self.n_tokens)
            h = F.embedding_bag(rows, W_in.reshape(runs * self.d_in, -1), mode="sum")
            h = h.view(runs, batch, -1)  # (run, batch, N)
        else:
            W_E = params["W_E"]  # (run, p, d_embed)
            run_offsets = torch.arange(runs, device=x.device)[:, None, None] * self.vocab
            embedded = F.embedding(x + run_offsets, W_E.reshape(runs * self.vocab, -1))  # (run, batch, tokens, d)
            return linear(embedded.reshape(runs, batch, self.d_in), W_in, b_in)  # (run, batch, N)
        return h if b_in is None else h + b_in[:, None, :]

    def hidden(
        self,
        params: dict[str, torch.Tensor],
        x: torch.Tensor,
        generators: list[torch.Generator] | None = None,
        buffers: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Activations of the last hidden layer (run, batch, N): the representation the readout sees.

        generators: one per run for a training pass (dropout masks; BatchNorm uses the batch's statistics
        and updates `buffers` in place); None for evaluation (no dropout; BatchNorm uses `buffers`).
        """
        h = self._output(params, "in", self.input_layer(params, x), generators, buffers)
        for i in range(1, self.config.depth):
            pre = linear(h, params[f"W_h{i}"], params.get(f"b_h{i}"))
            h = self._output(params, f"h{i}", pre, generators, buffers)
        return h

    def _output(
        self,
        params: dict[str, torch.Tensor],
        layer: str,
        pre: torch.Tensor,
        generators: list[torch.Generator] | None,
        buffers: dict[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        """A hidden layer's output from its pre-activations: activation, then BatchNorm, then dropout."""
        h = self.act(pre)
        c = self.config
        if c.batchnorm:
            if buffers is None:
                raise ValueError("an MLP with BatchNorm needs its running statistics (buffers) to run")
            running = buffers[f"running_mean_{layer}"], buffers[f"running_var_{layer}"]
            h = batch_norm(h, params[f"gamma_{layer}"], params[f"beta_{layer}"], running, generators is not None)
        if generators is not None and c.dropout > 0.0:
            h = dropout(h, c.dropout, generators)
        return h

    def forward(
        self,
        params: dict[str, torch.Tensor],
        x: torch.Tensor,
        generators: list[torch.Generator] | None = None,
        buffers: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits (run, batch, n_classes) for inputs x (run, batch, tokens) or (run, batch, n_bits).

        generators (one per run) make it a training pass; see `hidden`.
        """
        h = self.hidden(params, x, generators, buffers)
        return linear(h, params["W_out"], params.get("b_out"))


def batch_norm(
    h: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    running: tuple[torch.Tensor, torch.Tensor],
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """BatchNorm over the batch axis of each run: h (run, batch, N), gamma/beta/running stats (run, N).

    As torch.nn.BatchNorm1d: training normalizes by the batch's mean and biased variance and moves the
    running mean and *unbiased* variance a `momentum` step towards them; evaluation uses the running ones.
    """
    running_mean, running_var = running
    if training:
        mean, var = h.mean(dim=1), h.var(dim=1, unbiased=False)  # (run, N)
        with torch.no_grad():
            n = h.shape[1]
            running_mean.lerp_(mean, momentum)
            running_var.lerp_(var * (n / max(n - 1, 1)), momentum)
    else:
        mean, var = running_mean, running_var
    return (h - mean[:, None]) * torch.rsqrt(var[:, None] + eps) * gamma[:, None] + beta[:, None]


def dropout(h: torch.Tensor, rate: float, generators: list[torch.Generator]) -> torch.Tensor:
    """Inverted dropout, each run's mask drawn on the CPU from its own generator (device-independent),
    so a run's masks do not depend on the other runs of its stack."""
    keep = torch.stack([torch.rand(h.shape[1:], generator=g) for g in generators]).to(h.device) >= rate
    return h * keep / (1.0 - rate)
