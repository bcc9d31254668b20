"""Decoder-only transformer with a run axis: Nanda et al. 2023 (1 layer) and Power et al. 2022 (2 layers).

Parameters are named as TransformerLens names them, with a leading run axis:
    W_E (run, d_vocab, d_model)      W_pos (run, n_ctx, d_model)   [learned positions only]
    blocks.{l}.attn.W_Q/W_K/W_V (run, n_heads, d_model, d_head)    blocks.{l}.attn.W_O (run, n_heads, d_head, d_model)
    blocks.{l}.attn.b_Q/b_K/b_V (run, n_heads, d_head), b_O (run, d_model)        [attn_bias]
    blocks.{l}.mlp.W_in (run, d_model, d_mlp), b_in, W_out (run, d_mlp, d_model), b_out   [mlp_bias]
    blocks.{l}.mlp.W_gate (run, d_model, d_mlp)                                     [mlp: gated]
    blocks.{l}.ln1.w/b, ln2.w/b, ln_final.w/b (run, d_model)             [layernorm; RMSNorm: w only]
    W_U (run, d_model, n_classes), b_U                        [unless tie_embeddings; b_U: unembed_bias]

Every activation passes a named hook point (TransformerLens names, run axis first): `hooks={name: fn}`
reads or replaces it (ablations), and `run_with_cache` returns all of them.

This file computes every position, the way the model is defined: embed -> blocks (attention, MLP) ->
unembed at "=". Training uses the same building blocks with exact shortcuts around them
(models/shortcuts.py: ShortcutTransformer, which build_model returns).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from groklab.config import TransformerModel
from groklab.models.layers import ACTIVATIONS, Hooks, Params, dropout, hook, layer_norm, linear, named_matrices
from groklab.models.protocol import run_with_cache
from groklab.seeds import derive_seed

PRE = ("pre", "pre_stream")
"""The LayerNorm placements that normalize each sublayer's input and the final residual stream."""


class Transformer:
    """The model of one stack: shapes from the config and the task's vocabulary; parameters passed in."""

    def __init__(self, config: TransformerModel, vocab: int, n_classes: int) -> None:
        self.config = config
        self.vocab = vocab
        self.n_classes = n_classes
        self.equals = vocab  # token id of "="
        self.op = vocab + 1  # token id of the operation symbol (Power's "a op b =")
        self.n_ctx = 3 if config.sequence == "a b =" else 4
        self.d_vocab = vocab + (1 if config.sequence == "a b =" else 2)
        self.d_head = config.head_dim
        self.act = ACTIVATIONS[config.activation]
        self.final_norm = config.layernorm in PRE  # a LayerNorm before the unembedding
        last = "ln_final.hook_normalized" if self.final_norm else f"blocks.{config.n_layers - 1}.hook_resid_post"
        unembedding = "W_E" if config.tie_embeddings else "W_U"
        self.readout: tuple[str, ...] = (unembedding, "b_U") if config.unembed_bias else (unembedding,)
        self.readout_input = last  # the stream the unembedding reads (at "="; with LayerNorm, before its w and b)
        self.neuron_hook = "blocks.0.mlp.hook_pre"
        self.feature_hooks = tuple(
            f"blocks.{i}.{name}" for i in range(config.n_layers) for name in ("mlp.hook_post", "hook_resid_post")
        )
        self.embeddings: tuple[str, ...] = ("W_E", "W_pos")
        self.neurons_from_weights = False  # attention mixes the operands before the first MLP
        self.trains_differently = config.dropout > 0

    # -- inputs ------------------------------------------------------------------------------------

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Operand pairs (..., 2) -> token sequences (..., n_ctx); done once per stack, not per step.

        >>> from groklab.config import TransformerModel
        >>> Transformer(TransformerModel(sequence="a op b ="), vocab=7, n_classes=7).prepare(torch.tensor([[3, 5]]))
        tensor([[3, 8, 5, 7]])
        """
        a, b = x[..., :1], x[..., 1:]
        equals = torch.full_like(a, self.equals)
        if self.config.sequence == "a b =":
            return torch.cat([a, b, equals], dim=-1)
        return torch.cat([a, torch.full_like(a, self.op), b, equals], dim=-1)

    # -- parameters --------------------------------------------------------------------------------

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape of one run (no run axis)."""
        c, H, E, D = self.config, self.config.n_heads, self.d_head, self.config.d_model
        shapes: dict[str, tuple[int, ...]] = {"W_E": (self.d_vocab, D)}
        if c.positional == "learned":
            shapes["W_pos"] = (self.n_ctx, D)
        norm = ("w", "b") if c.norm == "layernorm" else ("w",)
        for layer in range(c.n_layers):
            p = f"blocks.{layer}."
            if c.layernorm != "none":
                shapes.update({f"{p}{ln}.{n}": (D,) for ln in ("ln1", "ln2") for n in norm})
            for name in ("W_Q", "W_K", "W_V"):
                shapes[p + "attn." + name] = (H, D, E)
            shapes[p + "attn.W_O"] = (H, E, D)
            if c.attn_bias:
                shapes.update({p + "attn.b_Q": (H, E), p + "attn.b_K": (H, E), p + "attn.b_V": (H, E)})
                shapes[p + "attn.b_O"] = (D,)
            if c.mlp == "gated":
                shapes[p + "mlp.W_gate"] = (D, c.d_mlp)
            shapes[p + "mlp.W_in"], shapes[p + "mlp.W_out"] = (D, c.d_mlp), (c.d_mlp, D)
            if c.mlp_bias:
                shapes[p + "mlp.b_in"], shapes[p + "mlp.b_out"] = (c.d_mlp,), (D,)
        if self.final_norm:
            shapes.update({f"ln_final.{n}": (D,) for n in norm})
        if not c.tie_embeddings:
            shapes["W_U"] = (D, self.n_classes)
        if c.unembed_bias:
            shapes["b_U"] = (self.n_classes,)
        return shapes

    def init(self, seed: int, dtype: torch.dtype = torch.float32) -> Params:
        """Parameters of one run, drawn on the CPU from the run's own init stream (device-independent)."""
        generator = torch.Generator().manual_seed(derive_seed(seed, "init"))
        D, params = self.config.d_model, {}
        for name, shape in self.shapes().items():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "w":  # LayerNorm gain
                values = torch.ones(shape, dtype=torch.float64)
            elif leaf == "b" or leaf.startswith("b_"):
                values = torch.zeros(shape, dtype=torch.float64)
                if self.config.init == "default" and leaf.startswith("b_"):
                    fan_in = {"b_O": self.config.n_heads * self.d_head, "b_out": self.config.d_mlp}.get(leaf, D)
                    values = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) / math.sqrt(fan_in)
            elif self.config.init == "nanda":
                std = 1 / math.sqrt(self.d_vocab if leaf == "W_U" else D)
                values = torch.randn(shape, generator=generator, dtype=torch.float64) * std
            elif leaf in ("W_E", "W_pos"):
                values = torch.randn(shape, generator=generator, dtype=torch.float64)
            else:  # nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                fan_in = {"W_O": self.config.n_heads * self.d_head, "W_out": self.config.d_mlp}.get(leaf, D)
                values = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) / math.sqrt(fan_in)
            params[name] = (values * self.config.init_scale).to(dtype)
        return params

    def buffers(self, seeds: list[int], device: torch.device, dtype: torch.dtype) -> Params:
        """A transformer keeps no running statistics."""
        return {}

    def layout(self, params: Params) -> Params:
        """Parameters as they are: the transformer reads every matrix in its stored order."""
        return params

    # -- forward: embed -> blocks -> unembed ----------------------------------------------------------

    def forward(
        self,
        params: Params,
        tokens: torch.Tensor,
        hooks: Hooks | None = None,
        *,
        buffers: Params | None = None,
        generators: list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Logits at the last position (run, batch, n_classes) for tokens (run, batch, n_ctx).

        generators: one per run, for dropout masks while training (None = evaluation, no dropout).
        """
        hooks = hooks or {}
        resid = self.embed(params, tokens, hooks)  # (run, batch, pos, d_model)
        for layer in range(self.config.n_layers):
            resid = self.block(params, layer, resid, hooks, generators)
        return self.unembed(params, resid, hooks)

    def embed(self, params: Params, tokens: torch.Tensor, hooks: Hooks) -> torch.Tensor:
        """Token plus position embeddings: tokens (run, batch, pos) -> (run, batch, pos, d_model)."""
        runs, D = tokens.shape[0], self.config.d_model
        run_offsets = torch.arange(runs, device=tokens.device)[:, None, None] * self.d_vocab
        embed = F.embedding(tokens + run_offsets, params["W_E"].reshape(runs * self.d_vocab, D))
        embed = hook(hooks, "hook_embed", embed)  # (run, batch, pos, d_model)
        pos = hook(hooks, "hook_pos_embed", self.positions(params, runs, embed))  # (run, pos, d_model)
        return embed + pos[:, None, : tokens.shape[2]]

    def positions(self, params: Params, runs: int, like: torch.Tensor) -> torch.Tensor:
        """Position embeddings (run, n_ctx, d_model): learned W_pos, the fixed sinusoidal table, or zeros (rotary
        positions turn the queries and keys instead)."""
        if self.config.positional == "learned":
            return params["W_pos"]
        if self.config.positional == "rotary":
            return like.new_zeros(runs, self.n_ctx, self.config.d_model)
        return sinusoidal_on(self.n_ctx, self.config.d_model, like.device, like.dtype).expand(runs, -1, -1)

    def block(
        self, params: Params, layer: int, resid: torch.Tensor, hooks: Hooks, generators: list[torch.Generator] | None
    ) -> torch.Tensor:
        """One block over every position: attention, then the MLP, each added to the residual stream."""
        p = f"blocks.{layer}."
        resid = hook(hooks, p + "hook_resid_pre", resid)  # (run, batch, pos, d_model)
        q, k, v = (hook(hooks, p + f"attn.hook_{n}", t) for n, t in zip("qkv", self.qkv(params, layer, resid)))
        if self.config.positional == "rotary":  # as TransformerLens: hook_q, hook_k before the turn
            q, k = (hook(hooks, p + f"attn.hook_rot_{n}", rotary(t, 0)) for n, t in (("q", q), ("k", k)))
        attn_out = self.attend(params, layer, attention_scores(q, k, self.config.attention), v, hooks, generators)
        return self.mlp_block(params, layer, resid, attn_out, hooks, generators)

    def qkv(self, params: Params, layer: int, resid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Queries, keys and values (run, batch, pos, head, d_head) of a block's input (run, batch, pos, d_model)."""
        runs, batch, n_pos, D = resid.shape
        x = self.normalize(resid, params, f"blocks.{layer}.ln1.") if self.config.layernorm in PRE else resid
        W_QKV, b_QKV = self.fused_qkv(params, layer)
        fused = linear(x.reshape(runs, batch * n_pos, D), W_QKV, b_QKV)
        return fused.view(runs, batch, n_pos, 3, self.config.n_heads, self.d_head).unbind(dim=3)

    def fused_qkv(self, params: Params, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """W_Q, W_K, W_V of a block as one (run, d_model, 3 * heads * d_head) matrix (and its bias): one matmul."""
        p, runs = f"blocks.{layer}.attn.", params["W_E"].shape[0]
        H, E, D = self.config.n_heads, self.d_head, self.config.d_model
        W_QKV = torch.cat([params[p + f"W_{n}"].permute(0, 2, 1, 3).reshape(runs, D, H * E) for n in "QKV"], -1)
        if not self.config.attn_bias:
            return W_QKV, None
        return W_QKV, torch.cat([params[p + f"b_{n}"].reshape(runs, H * E) for n in "QKV"], -1)

    def attend(
        self,
        params: Params,
        layer: int,
        scores: torch.Tensor,
        v: torch.Tensor,
        hooks: Hooks,
        generators: list[torch.Generator] | None,
    ) -> torch.Tensor:
        """Attention output (run, batch, q_pos, d_model) from scores (run, batch, head, q_pos, k_pos) and
        values (run, batch, k_pos, head, d_head): softmax, weighted values, W_O."""
        c, p = self.config, f"blocks.{layer}."
        runs, batch, _, n_q, _ = scores.shape
        H, E, D = c.n_heads, self.d_head, c.d_model
        scores = hook(hooks, p + "attn.hook_attn_scores", scores)
        attention = scores.softmax(dim=-1)
        if c.attention_rate < 1.0:  # Zhong et al.: alpha softmax + (1 - alpha) on every key the query may see
            attention = c.attention_rate * attention + (1.0 - c.attention_rate) * (scores > float("-inf"))
        pattern = hook(hooks, p + "attn.hook_pattern", dropout(attention, c.dropout, generators))
        weights = pattern.permute(0, 1, 3, 4, 2)[..., None]  # (run, batch, q_pos, k_pos, head, 1)
        z = hook(hooks, p + "attn.hook_z", (weights * v[:, :, None]).sum(3))  # (run, batch, q_pos, head, d_head)
        attn_out = linear(z.reshape(runs, batch * n_q, H * E), params[p + "attn.W_O"].reshape(runs, H * E, D), None)
        if c.attn_bias:
            attn_out = attn_out + params[p + "attn.b_O"][:, None, :]
        return hook(hooks, p + "hook_attn_out", dropout(attn_out.view(runs, batch, n_q, D), c.dropout, generators))

    def mlp_block(
        self,
        params: Params,
        layer: int,
        resid: torch.Tensor,
        attn_out: torch.Tensor,
        hooks: Hooks,
        generators: list[torch.Generator] | None,
    ) -> torch.Tensor:
        """The rest of a block: add the attention output, then the MLP's; LayerNorm where configured."""
        c, p = self.config, f"blocks.{layer}."
        runs, batch, n_q, D = attn_out.shape
        if c.layernorm == "pre_stream":  # the normalized input replaces the stream (ironjr/grokfast's Block)
            resid = self.normalize(resid, params, p + "ln1.")
        resid = resid + attn_out
        if c.layernorm == "post":
            resid = self.normalize(resid, params, p + "ln1.")
        resid = hook(hooks, p + "hook_resid_mid", resid)
        x = self.normalize(resid, params, p + "ln2.") if c.layernorm in PRE else resid
        x = x.reshape(runs, batch * n_q, D)
        if c.mlp == "gated":  # TransformerLens's GatedMLP: hook_pre is the gate's, hook_pre_linear W_in's
            gate = hook(hooks, p + "mlp.hook_pre", linear(x, params[p + "mlp.W_gate"], None).view(runs, batch, n_q, -1))
            pre_linear = linear(x, params[p + "mlp.W_in"], params.get(p + "mlp.b_in")).view(runs, batch, n_q, -1)
            post = hook(hooks, p + "mlp.hook_post", self.act(gate) * hook(hooks, p + "mlp.hook_pre_linear", pre_linear))
        else:
            pre = linear(x, params[p + "mlp.W_in"], params.get(p + "mlp.b_in"))
            post = hook(
                hooks, p + "mlp.hook_post", self.act(hook(hooks, p + "mlp.hook_pre", pre.view(runs, batch, n_q, -1)))
            )
        mlp_out = linear(post.reshape(runs, batch * n_q, -1), params[p + "mlp.W_out"], params.get(p + "mlp.b_out"))
        resid = resid + hook(
            hooks, p + "hook_mlp_out", dropout(mlp_out.view(runs, batch, n_q, D), c.dropout, generators)
        )
        if c.layernorm == "post":
            resid = self.normalize(resid, params, p + "ln2.")
        return hook(hooks, p + "hook_resid_post", resid)

    def normalize(self, x: torch.Tensor, params: Params, prefix: str) -> torch.Tensor:
        """LayerNorm, or RMSNorm (model.norm), with the run's gain (and LayerNorm's bias) at `prefix`."""
        if self.config.norm == "layernorm":
            return layer_norm(x, params, prefix)
        return rms_norm(x, params[prefix + "w"])

    def unembed(self, params: Params, resid: torch.Tensor, hooks: Hooks) -> torch.Tensor:
        """Logits (run, batch, n_classes) read at the last ("=") position of the residual stream."""
        if self.final_norm:
            # as TransformerLens hooks it: normalized, before the gain and bias (which its fold_ln moves into W_U)
            rms = self.config.norm == "rmsnorm"
            plain = rms_norm(resid, None) if rms else F.layer_norm(resid, (resid.shape[-1],))
            normalized = hook(hooks, "ln_final.hook_normalized", plain)
            resid = normalized * params["ln_final.w"][:, None, None]
            resid = resid if rms else resid + params["ln_final.b"][:, None, None]
        final = resid[:, :, -1]  # (run, batch, d_model): the "=" position
        return linear(final, self.unembedding(params), params.get("b_U"))  # (run, batch, n_classes)

    def unembedding(self, params: Params) -> torch.Tensor:
        """W_U (run, d_model, n_classes), or with tied embeddings the classes' rows of W_E, transposed."""
        if self.config.tie_embeddings:
            return params["W_E"][:, : self.n_classes].transpose(1, 2)
        return params["W_U"]

    def run_with_cache(
        self, params: Params, tokens: torch.Tensor, *, buffers: Params | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and every hooked activation at every position (no gradients)."""
        return run_with_cache(self, params, tokens, buffers)

    def hook_names(self) -> list[str]:
        """Every hook point, in the order the forward pass reaches them."""
        names = ["hook_embed", "hook_pos_embed"]
        for layer in range(self.config.n_layers):
            p = f"blocks.{layer}."
            names += [p + "hook_resid_pre"] + [p + f"attn.hook_{n}" for n in ("q", "k", "v")]
            names += [p + "attn.hook_rot_q", p + "attn.hook_rot_k"] if self.config.positional == "rotary" else []
            names += [p + "attn.hook_attn_scores", p + "attn.hook_pattern", p + "attn.hook_z", p + "hook_attn_out"]
            gated = [p + "mlp.hook_pre_linear"] if self.config.mlp == "gated" else []
            names += [p + "hook_resid_mid", p + "mlp.hook_pre", *gated, p + "mlp.hook_post", p + "hook_mlp_out"]
            names += [p + "hook_resid_post"]
        return names + (["ln_final.hook_normalized"] if self.final_norm else [])

    # -- what the measures read ----------------------------------------------------------------------

    def at_readout(self, activation: torch.Tensor) -> torch.Tensor:
        """A hooked activation (run, batch, pos, ...) at the "=" position, where the logits are read."""
        return activation[:, :, -1]

    def neuron_weights(self, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """Block 0's MLP neurons: incoming (run, d_mlp, d_model) and outgoing (run, d_mlp, d_model) weights."""
        return params["blocks.0.mlp.W_in"].transpose(1, 2), params["blocks.0.mlp.W_out"]

    def silence_neurons(self, params: Params, keep: torch.Tensor) -> Params:
        """The parameters with block 0's MLP neurons where keep (run, d_mlp) is 0 cut off: their rows of W_out
        zeroed."""
        name = "blocks.0.mlp.W_out"
        return {**params, name: params[name] * keep[:, :, None]}

    def matrices(self, params: Params) -> dict[str, torch.Tensor]:
        """Every W_* as (run, fan_in, fan_out); W_Q, W_K, W_V and W_O with their heads side by side."""
        return named_matrices(params)

    def operand_embeddings(self, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """The token embedding W_E of the operand values (run, p, d_model), the same for a and b."""
        W_E = params["W_E"][:, : self.vocab]
        return W_E, W_E


def rms_norm(x: torch.Tensor, w: torch.Tensor | None, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm over the last axis, x / sqrt(mean(x^2) + eps), times a per-run gain w (run, d) if given."""
    normalized = x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps)
    return normalized if w is None else normalized * w.view(w.shape[0], *(1,) * (x.dim() - 2), w.shape[1])


def rotary(x: torch.Tensor, start: int, base: float = 10000.0) -> torch.Tensor:
    """Queries or keys (run, batch, pos, head, d_head) rotated by their positions start, start + 1, ...: each pair
    (x_i, x_{i + d/2}) turned by angle pos / base^(2i / d) (GPT-NeoX's layout; Su et al. 2021).

    >>> x = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 1, 1, 4)  # turned by pos = 1 radian in pair (0, 2)
    >>> rotary(x, 1).flatten().round(decimals=4)
    tensor([0.5403, 0.0000, 0.8415, 0.0000])
    """
    half = x.shape[-1] // 2
    angles = _angles(x.shape[2], start, half, base, x.device, x.dtype)  # (pos, half)
    cos, sin = angles.cos()[:, None], angles.sin()[:, None]  # (pos, 1, half): over the heads
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


@functools.cache
def _angles(n_pos: int, start: int, half: int, base: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(pos, half) pos / base^(i / half): the rotary angles, made once per shape and device."""
    frequencies = base ** (-torch.arange(half, dtype=torch.float64) / half)
    positions = torch.arange(start, start + n_pos, dtype=torch.float64)
    return (positions[:, None] * frequencies[None]).to(device, dtype)


def attention_scores(q: torch.Tensor, k: torch.Tensor, attention: str) -> torch.Tensor:
    """Scaled dot products (run, batch, head, q_pos, k_pos) of queries (run, batch, q_pos, head, d_head) and
    keys (run, batch, k_pos, head, d_head). Queries sit at the last q_pos positions of the keys' context, so
    causal attention masks every key after its query."""
    # Contexts are 3-4 tokens: broadcast-multiply-sum beats thousands of tiny bmm calls.
    scores = (q[:, :, :, None] * k[:, :, None]).sum(-1).permute(0, 1, 4, 2, 3) / math.sqrt(q.shape[-1])
    if attention == "causal":
        scores = scores.masked_fill(future_keys(q.shape[2], k.shape[2], q.device), float("-inf"))
    return scores


# The two constant tables are made once per device, not every step: on a GPU each remake is several launches
# and, for the sinusoidal table, a copy from the host that the step waits for.
@functools.cache
def future_keys(n_queries: int, n_keys: int, device: torch.device) -> torch.Tensor:
    """(q_pos, k_pos) True where a key comes after its query; the queries are the last n_queries positions."""
    query_pos = torch.arange(n_keys - n_queries, n_keys, device=device)
    return torch.arange(n_keys, device=device)[None, :] > query_pos[:, None]


@functools.cache
def sinusoidal_on(n_ctx: int, d_model: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The sinusoidal table on a device, in a dtype (made once)."""
    return sinusoidal(n_ctx, d_model).to(device, dtype)


def sinusoidal(n_ctx: int, d_model: int) -> torch.Tensor:
    """Fixed positional encodings (Vaswani et al. 2017): sin on even, cos on odd dimensions."""
    position = torch.arange(n_ctx, dtype=torch.float64)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    table = torch.zeros(n_ctx, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
    return table
