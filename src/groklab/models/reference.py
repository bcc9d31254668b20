"""Reference oracles: one run of a stack as a plain torch.nn.Module, written the obvious way.

No run axis, no shortcut, no gather tricks: one-hot inputs are one-hot vectors, layers are nn.Linear,
nn.LayerNorm, nn.BatchNorm1d and nn.Embedding, attention is F.scaled_dot_product_attention over every
position. They exist to check groklab's models (logits and gradients, tests/unit/test_oracles.py) and to
hand one trained run to code that expects an nn.Module. Evaluation mode only: dropout is off and
BatchNorm reads its running statistics.

    oracle = ReferenceMLP.from_run(model, params, run=0, buffers=buffers)   # or ReferenceTransformer
    logits = oracle(x)                      # x: one run's inputs as model.prepare makes them, (batch, ...)
    oracle.stack_layout(oracle.grads())     # gradients renamed and reshaped as groklab's parameters (one run)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from groklab.config import TransformerModel
from groklab.models.mlp import MLP
from groklab.models.transformer import Transformer

Convert = Callable[[torch.Tensor], torch.Tensor]
"""A groklab tensor of one run -> the module's tensor (a reshape or transpose)."""

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "quadratic": torch.square,
    "relu": F.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "silu": F.silu,
    "identity": lambda h: h,
    "near_linear": lambda h: h + 0.01 * torch.square(h),
}


class _Oracle(nn.Module):
    """Loading one run's weights in and reading gradients out, by a table of layout conversions.

    `_layout()` lists (groklab name, module attribute path, to_module) where to_module maps a groklab tensor
    (no run axis) to the module's tensor; the conversions are reshapes and transposes, inverted by autograd.
    """

    _shapes: dict[str, tuple[int, ...]]  # groklab's parameter shapes of one run (model.shapes())

    def _layout(self) -> list[tuple[str, str, Convert]]:
        raise NotImplementedError

    def load_run(
        self, params: dict[str, torch.Tensor], run: int, buffers: dict[str, torch.Tensor] | None = None
    ) -> None:
        """Copy run `run` of a stack's parameters (and BatchNorm statistics) into this module."""
        state = {**params, **(buffers or {})}
        with torch.no_grad():
            for name, path, to_module in self._layout():
                if name not in state and name == "output_scale":  # a stack without output scales stores none: 1
                    continue
                target = self.get_parameter(path) if path in dict(self.named_parameters()) else self.get_buffer(path)
                target.copy_(to_module(state[name][run].detach()))

    def stack_layout(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tensors keyed by this module's parameter paths (e.g. gradients) -> groklab names and shapes."""
        out = {}
        for name, path, to_module in self._layout():
            if path not in tensors:
                continue
            probe = torch.zeros(self._shapes[name], dtype=tensors[path].dtype, requires_grad=True)
            # to_module is linear (a reshape/transpose): its vector-Jacobian product is its inverse.
            (out[name],) = torch.autograd.grad(to_module(probe), probe, tensors[path])
        return out

    def grads(self) -> dict[str, torch.Tensor]:
        """The gradient of every parameter, keyed by its path."""
        return {path: p.grad for path, p in self.named_parameters() if p.grad is not None}


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _transposed(t: torch.Tensor) -> torch.Tensor:
    return t.T


class ReferenceMLP(_Oracle):
    """groklab's MLP for one run: [one-hot | embedding | summed embedding | vector] -> (Linear -> act [-> BatchNorm])*
    -> Linear [-> minus the mean squared distance to each label template]."""

    def __init__(self, model: MLP) -> None:
        super().__init__()
        c = model.config
        self.vocab, self.embedding, self._shapes = model.vocab, c.embedding, model.shapes()
        if model.embeds:
            assert model.vocab is not None  # only token inputs are embedded
            self.embed = nn.Embedding(model.vocab, c.embedding_dim)
        widths = [model.d_in] + [c.width] * c.depth
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=c.bias) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(c.width) for _ in range(c.depth)) if c.batchnorm else None
        self.readout = nn.Linear(c.width, model.n_out, bias=c.bias)
        if model.templates:
            self.register_buffer("label_templates", torch.zeros(model.n_classes, c.template_dim))
        self.register_buffer("output_scale", torch.tensor(1.0))  # lazy training's alpha (model.output_scale)
        self.act: Callable[[torch.Tensor], torch.Tensor] = ACTIVATIONS[c.activation]
        self.layer_names = ["in"] + [f"h{i}" for i in range(1, c.depth)]
        self.eval()

    @classmethod
    def from_run(
        cls, model: MLP, params: dict[str, torch.Tensor], run: int, buffers: dict[str, torch.Tensor] | None = None
    ) -> ReferenceMLP:
        """The oracle of run `run` of a stack, in the stack's dtype."""
        oracle = cls(model).to(next(iter(params.values())).dtype)
        oracle.load_run(params, run, buffers)
        return oracle

    def _layout(self) -> list[tuple[str, str, Convert]]:
        rows: list[tuple[str, str, Convert]] = [("W_E", "embed.weight", _same)] if hasattr(self, "embed") else []
        for i, name in enumerate(self.layer_names):
            rows += [(f"W_{name}", f"layers.{i}.weight", _transposed), (f"b_{name}", f"layers.{i}.bias", _same)]
            rows += [(f"gamma_{name}", f"norms.{i}.weight", _same), (f"beta_{name}", f"norms.{i}.bias", _same)]
            rows += [(f"running_mean_{name}", f"norms.{i}.running_mean", _same)]
            rows += [(f"running_var_{name}", f"norms.{i}.running_var", _same)]
        rows += [("W_out", "readout.weight", _transposed), ("b_out", "readout.bias", _same)]
        rows += [("T_labels", "label_templates", _same), ("output_scale", "output_scale", _same)]
        paths = dict(self.named_parameters()) | dict(self.named_buffers())
        return [row for row in rows if row[1] in paths]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_classes) of one run's inputs: tokens (batch, tokens) or vectors (batch, n_bits)."""
        if self.vocab is None:
            h = x.to(self.readout.weight.dtype)
        elif self.embedding == "one_hot":
            h = F.one_hot(x, self.vocab).flatten(1).to(self.readout.weight.dtype)  # (batch, tokens * vocab)
        elif self.embedding == "summed":
            h = self.embed(x[:, 0]) + self.embed(x[:, 1])  # (batch, d_embed)
        else:
            h = self.embed(x).flatten(1)  # (batch, tokens * d_embed)
        for i, layer in enumerate(self.layers):
            h = self.act(layer(h))
            if self.norms is not None:
                h = self.norms[i](h)
        y = self.readout(h) * self.output_scale
        if not hasattr(self, "label_templates"):
            return y
        templates = self.label_templates
        distances = [F.mse_loss(y, t.expand_as(y), reduction="none").mean(dim=1) for t in templates]  # type: ignore
        return -torch.stack(distances, dim=1)


class ReferenceTransformer(_Oracle):
    """groklab's transformer for one run, every position computed, read at the last ("=") position."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        c = model.config
        self.config, self._shapes = c, model.shapes()
        D, E = c.d_model, model.d_head
        self.embed = nn.Embedding(model.d_vocab, D)
        self.n_classes = model.n_classes
        if c.positional == "learned":
            self.pos = nn.Parameter(torch.zeros(model.n_ctx, D))
        elif c.positional == "sinusoidal":
            self.register_buffer("pos", _sinusoidal(model.n_ctx, D))
        else:  # rotary: the blocks turn queries and keys; nothing is added to the stream
            self.register_buffer("pos", torch.zeros(model.n_ctx, D))
        self.blocks = nn.ModuleList(_Block(c, E) for _ in range(c.n_layers))
        self.ln_final = _norm(c, D) if c.layernorm in ("pre", "pre_stream") else None
        self.unembed = None if c.tie_embeddings else nn.Linear(D, model.n_classes, bias=c.unembed_bias)
        self.unembed_bias = nn.Parameter(torch.zeros(model.n_classes)) if c.tie_embeddings and c.unembed_bias else None
        self.eval()

    @classmethod
    def from_run(
        cls,
        model: Transformer,
        params: dict[str, torch.Tensor],
        run: int,
        buffers: dict[str, torch.Tensor] | None = None,
    ) -> ReferenceTransformer:
        """The oracle of run `run` of a stack, in the stack's dtype."""
        oracle = cls(model).to(next(iter(params.values())).dtype)
        oracle.load_run(params, run, buffers)
        return oracle

    def _layout(self) -> list[tuple[str, str, Convert]]:
        c = self.config

        def heads_in(t: torch.Tensor) -> torch.Tensor:  # (head, d_model, d_head) -> nn.Linear (head * d_head, d_model)
            return t.permute(0, 2, 1).reshape(-1, t.shape[1])

        def heads_out(t: torch.Tensor) -> torch.Tensor:  # (head, d_head, d_model) -> nn.Linear (d_model, head * d_head)
            return t.reshape(-1, t.shape[-1]).T

        def flat(t: torch.Tensor) -> torch.Tensor:  # (head, d_head) -> (head * d_head,)
            return t.reshape(-1)

        rows: list[tuple[str, str, Convert]] = [("W_E", "embed.weight", _same)]
        if c.positional == "learned":
            rows.append(("W_pos", "pos", _same))
        for layer in range(c.n_layers):
            g, m = f"blocks.{layer}.", f"blocks.{layer}."
            for n in "QKV":
                rows += [(g + f"attn.W_{n}", m + f"{n.lower()}.weight", heads_in)]
                rows += [(g + f"attn.b_{n}", m + f"{n.lower()}.bias", flat)]
            rows += [(g + "attn.W_O", m + "o.weight", heads_out), (g + "attn.b_O", m + "o.bias", _same)]
            rows += [(g + "mlp.W_in", m + "mlp_in.weight", _transposed), (g + "mlp.b_in", m + "mlp_in.bias", _same)]
            rows += [(g + "mlp.W_gate", m + "mlp_gate.weight", _transposed)]
            rows += [(g + "mlp.W_out", m + "mlp_out.weight", _transposed), (g + "mlp.b_out", m + "mlp_out.bias", _same)]
            for ln in ("ln1", "ln2"):
                rows += [(g + f"{ln}.w", m + f"{ln}.weight", _same), (g + f"{ln}.b", m + f"{ln}.bias", _same)]
        rows += [("ln_final.w", "ln_final.weight", _same), ("ln_final.b", "ln_final.bias", _same)]
        rows += [("W_U", "unembed.weight", _transposed), ("b_U", "unembed.bias", _same), ("b_U", "unembed_bias", _same)]
        paths = dict(self.named_parameters())
        return [row for row in rows if row[1] in paths]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_classes) at the last position of token sequences (batch, n_ctx)."""
        x = self.embed(tokens) + self.pos  # (batch, n_ctx, d_model)
        for block in self.blocks:
            x = block(x)
        if self.ln_final is not None:
            x = self.ln_final(x)
        if self.unembed is not None:
            return self.unembed(x[:, -1])
        logits = x[:, -1] @ self.embed.weight[: self.n_classes].T  # tied: the classes' token embeddings
        return logits if self.unembed_bias is None else logits + self.unembed_bias


class _Block(nn.Module):
    """Attention then MLP, each added to the residual stream; LayerNorm before (pre, pre_stream), after (post) or
    none."""

    def __init__(self, c: TransformerModel, d_head: int) -> None:
        super().__init__()
        D, H = c.d_model, c.n_heads
        self.n_heads, self.d_head = H, d_head
        self.layernorm, self.causal = c.layernorm, c.attention == "causal"
        self.rotary, self.rate = c.positional == "rotary", c.attention_rate
        self.q, self.k, self.v = (nn.Linear(D, H * d_head, bias=c.attn_bias) for _ in range(3))
        self.o = nn.Linear(H * d_head, D, bias=c.attn_bias)
        self.mlp_in = nn.Linear(D, c.d_mlp, bias=c.mlp_bias)
        self.mlp_gate = nn.Linear(D, c.d_mlp, bias=False) if c.mlp == "gated" else None
        self.mlp_out = nn.Linear(c.d_mlp, D, bias=c.mlp_bias)
        self.act: Callable[[torch.Tensor], torch.Tensor] = ACTIVATIONS[c.activation]
        if self.layernorm != "none":
            self.ln1, self.ln2 = _norm(c, D), _norm(c, D)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        batch, n_ctx, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # (batch, n_ctx, head * d_head) -> (batch, head, n_ctx, d_head)
            return t.view(batch, n_ctx, self.n_heads, self.d_head).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        if not self.rotary and self.rate == 1.0:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:  # written out: the turned queries and keys, and Zhong et al.'s rate
            if self.rotary:
                q, k = _turned(q), _turned(k)
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)  # (batch, head, query, key)
            visible = torch.ones(n_ctx, n_ctx, dtype=torch.bool, device=x.device)
            visible = visible.tril() if self.causal else visible
            pattern = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)
            z = (self.rate * pattern + (1 - self.rate) * visible) @ v
        return self.o(z.transpose(1, 2).reshape(batch, n_ctx, -1))

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        if self.mlp_gate is not None:  # GLU: act(x W_gate) * (x W_in + b_in)
            return self.mlp_out(self.act(self.mlp_gate(x)) * self.mlp_in(x))
        return self.mlp_out(self.act(self.mlp_in(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layernorm == "pre":
            x = x + self.attention(self.ln1(x))
            return x + self.mlp(self.ln2(x))
        if self.layernorm == "pre_stream":  # ironjr/grokfast's Block: x = ln_1(x); x = x + attn(x); ...
            x = self.ln1(x)
            x = x + self.attention(x)
            return x + self.mlp(self.ln2(x))
        if self.layernorm == "post":
            x = self.ln1(x + self.attention(x))
            return self.ln2(x + self.mlp(x))
        x = x + self.attention(x)
        return x + self.mlp(x)


def _norm(c: TransformerModel, d_model: int) -> nn.Module:
    """nn.LayerNorm, or nn.RMSNorm (gain only) at eps 1e-5."""
    return nn.LayerNorm(d_model) if c.norm == "layernorm" else nn.RMSNorm(d_model, eps=1e-5)


def _turned(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary positions written as complex numbers: (batch, head, pos, d_head) with the pair (x_i, x_{i + d/2}) as
    x_i + i x_{i + d/2}, multiplied by exp(i pos / base^(2i / d))."""
    half = x.shape[-1] // 2
    z = torch.complex(x[..., :half].double(), x[..., half:].double())
    pos = torch.arange(x.shape[-2], dtype=torch.float64)[:, None]
    turn = torch.polar(torch.ones(1, dtype=torch.float64), pos * base ** (-2.0 * torch.arange(half) / x.shape[-1]))
    z = z * turn
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)


def _sinusoidal(n_ctx: int, d_model: int) -> torch.Tensor:
    """Vaswani et al. 2017: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    table = torch.zeros(n_ctx, d_model, dtype=torch.float64)
    for pos in range(n_ctx):
        for i in range(0, d_model, 2):
            angle = pos / 10000 ** (i / d_model)
            table[pos, i] = math.sin(angle)
            if i + 1 < d_model:
                table[pos, i + 1] = math.cos(angle)
    return table
