"""Decoder-only transformer with a run axis: Nanda et al. 2023 (1 layer) and Power et al. 2022 (2 layers).

Parameters are named as TransformerLens names them, with a leading run axis:
    W_E (run, d_vocab, d_model)      W_pos (run, n_ctx, d_model)   [learned positions only]
    blocks.{l}.attn.W_Q/W_K/W_V (run, n_heads, d_model, d_head)    blocks.{l}.attn.W_O (run, n_heads, d_head, d_model)
    blocks.{l}.attn.b_Q/b_K/b_V (run, n_heads, d_head), b_O (run, d_model)        [attn_bias]
    blocks.{l}.mlp.W_in (run, d_model, d_mlp), b_in, W_out (run, d_mlp, d_model), b_out   [mlp_bias]
    blocks.{l}.ln1.w/b, ln2.w/b, ln_final.w/b (run, d_model)                        [layernorm]
    W_U (run, d_model, n_classes), b_U                                              [unembed_bias]

Every activation passes a named hook point (TransformerLens names, run axis first): `hooks={name: fn}`
reads or replaces it (ablations), and `run_with_cache` returns all of them.

Exact shortcuts (the logits are identical, tested against `run_with_cache`, which takes none of them):
- the answer is read at the last position only, so the last block computes its attention query,
  attention output, MLP and unembedding at that position alone (`last_only=True`, the default); keys
  and values still see every position;
- the first block's input at a position depends only on (token, position), so its queries, keys and
  values are computed once per (position, vocabulary entry) and gathered per example, instead of once
  per example and position (skipped when a hook reads or writes the embeddings);
- in a 1-layer model the only query is that of "=", the same for every example, so attention scores
  come from a (position, token, head) table (when no hooks are set);
- in a causal multi-layer "a op b =" model, positions "a op" see only a: they are computed once per
  value of a and their keys/values gathered per example (when no hooks are set).
The shortcuts assume sequences built by `prepare` (the last token is always "=").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from groklab.config import TransformerModel
from groklab.data.dataset import derive_seed
from groklab.models.mlp import ACTIVATIONS, dropout, linear

Hooks = dict[str, Callable[[torch.Tensor], torch.Tensor]]


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
        for layer in range(c.n_layers):
            p = f"blocks.{layer}."
            if c.layernorm != "none":
                shapes.update({p + "ln1.w": (D,), p + "ln1.b": (D,), p + "ln2.w": (D,), p + "ln2.b": (D,)})
            for name in ("W_Q", "W_K", "W_V"):
                shapes[p + "attn." + name] = (H, D, E)
            shapes[p + "attn.W_O"] = (H, E, D)
            if c.attn_bias:
                shapes.update({p + "attn.b_Q": (H, E), p + "attn.b_K": (H, E), p + "attn.b_V": (H, E)})
                shapes[p + "attn.b_O"] = (D,)
            shapes[p + "mlp.W_in"], shapes[p + "mlp.W_out"] = (D, c.d_mlp), (c.d_mlp, D)
            if c.mlp_bias:
                shapes[p + "mlp.b_in"], shapes[p + "mlp.b_out"] = (c.d_mlp,), (D,)
        if c.layernorm == "pre":
            shapes.update({"ln_final.w": (D,), "ln_final.b": (D,)})
        shapes["W_U"] = (D, self.n_classes)
        if c.unembed_bias:
            shapes["b_U"] = (self.n_classes,)
        return shapes

    def init(self, seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
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

    # -- forward -----------------------------------------------------------------------------------

    def forward(
        self,
        params: dict[str, torch.Tensor],
        tokens: torch.Tensor,
        hooks: Hooks | None = None,
        last_only: bool = True,
        generators: list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Logits at the last position (run, batch, n_classes) for tokens (run, batch, n_ctx).

        generators: one per run, for dropout masks while training (None = evaluation, no dropout).
        """
        hooks = hooks or {}
        c = self.config
        if not hooks and last_only and c.sequence == "a op b =" and c.attention == "causal" and c.n_layers > 1:
            if generators is None or c.dropout == 0.0:
                return self._forward_shared_prefix(params, tokens)
        runs, batch, n_ctx = tokens.shape
        D = self.config.d_model
        # Layer 0's q/k/v as a (position, token) table lookup, unless a hook may change its input.
        table_ok = not any(name in hooks for name in ("hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"))
        # A 1-layer model read at the last position needs the residual stream there only.
        first = n_ctx - 1 if table_ok and last_only and self.config.n_layers == 1 else 0
        run_offsets = torch.arange(runs, device=tokens.device)[:, None, None] * self.d_vocab
        embed = F.embedding(tokens[:, :, first:] + run_offsets, params["W_E"].reshape(runs * self.d_vocab, D))
        embed = _hook(hooks, "hook_embed", embed)  # (run, batch, pos, d_model)
        pos = _hook(hooks, "hook_pos_embed", self._positions(params, runs, embed))  # (run, pos, d_model)
        resid = embed + pos[:, None, first:]
        if not hooks and last_only and self.config.n_layers == 1:
            scores, v = self._scores_by_token(params, pos, tokens)
            resid, _ = self._block(params, 0, resid, hooks, True, generators, (None, None, v), scores=scores)
            return self._unembed(params, resid, hooks)
        for layer in range(self.config.n_layers):
            last = last_only and layer == self.config.n_layers - 1
            qkv = self._qkv_by_token(params, pos, tokens, last) if layer == 0 and table_ok else None
            resid, _ = self._block(params, layer, resid, hooks, last, generators, qkv)
        return self._unembed(params, resid, hooks)

    def _unembed(self, params: dict[str, torch.Tensor], resid: torch.Tensor, hooks: Hooks) -> torch.Tensor:
        if self.config.layernorm == "pre":
            resid = _hook(hooks, "ln_final.hook_normalized", _layer_norm(resid, params, "ln_final."))
        final = resid[:, :, -1]  # (run, batch, d_model): the "=" position
        return linear(final, params["W_U"], params.get("b_U"))  # (run, batch, n_classes)

    def _forward_shared_prefix(self, params: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        """The same logits, computing the "a op" prefix once per value of a instead of once per example.

        Under causal attention positions 0 and 1 of "a op b =" see only a and the constant op token,
        so their keys and values in every layer are a function of a alone: a pass over the p possible
        prefixes, gathered per example, replaces half of the per-example work (exact, tested).
        """
        runs, batch, n_ctx = tokens.shape
        D, P = self.config.d_model, 2
        device = tokens.device
        a_values = torch.arange(self.vocab, device=device)
        prefix = torch.stack([a_values, torch.full_like(a_values, self.op)], dim=-1).expand(runs, -1, -1)
        run_offsets = torch.arange(runs, device=device)[:, None, None] * self.d_vocab
        W_E = params["W_E"].reshape(runs * self.d_vocab, D)
        pos = self._positions(params, runs, W_E)  # (run, n_ctx, d_model)
        resid_prefix = F.embedding(prefix + run_offsets, W_E) + pos[:, None, :P]  # (run, p, P, d_model)
        resid = F.embedding(tokens[:, :, P:] + run_offsets, W_E) + pos[:, None, P:]  # (run, batch, n_ctx-P, d)
        a_rows = tokens[:, :, 0]  # (run, batch): which prefix each example has
        for layer in range(self.config.n_layers):
            last = layer == self.config.n_layers - 1
            qkv_prefix = self._qkv_by_token(params, pos, prefix, False) if layer == 0 else None
            qkv = self._qkv_by_token(params, pos, tokens[:, :, P:], last, first=P) if layer == 0 else None
            resid_prefix, (k_prefix, v_prefix) = self._block(params, layer, resid_prefix, {}, False, None, qkv_prefix)
            past = (_gather_rows(k_prefix, a_rows), _gather_rows(v_prefix, a_rows))  # (run, batch, P, h, e)
            resid, _ = self._block(params, layer, resid, {}, last, None, qkv, past)
        return self._unembed(params, resid, {})

    def run_with_cache(
        self, params: dict[str, torch.Tensor], tokens: torch.Tensor, last_only: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and every hooked activation (no gradients; all positions unless last_only)."""
        cache: dict[str, torch.Tensor] = {}

        def store(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
            def record(value: torch.Tensor) -> torch.Tensor:
                cache[name] = value.detach()
                return value

            return record

        with torch.no_grad():
            logits = self.forward(params, tokens, {n: store(n) for n in self.hook_names()}, last_only)
        return logits, cache

    def hook_names(self) -> list[str]:
        """Every hook point, in the order the forward pass reaches them."""
        names = ["hook_embed", "hook_pos_embed"]
        for layer in range(self.config.n_layers):
            p = f"blocks.{layer}."
            names += [p + "hook_resid_pre"] + [p + f"attn.hook_{n}" for n in ("q", "k", "v")]
            names += [p + "attn.hook_attn_scores", p + "attn.hook_pattern", p + "attn.hook_z", p + "hook_attn_out"]
            names += [p + "hook_resid_mid", p + "mlp.hook_pre", p + "mlp.hook_post", p + "hook_mlp_out"]
            names += [p + "hook_resid_post"]
        return names + (["ln_final.hook_normalized"] if self.config.layernorm == "pre" else [])

    def _positions(self, params: dict[str, torch.Tensor], runs: int, like: torch.Tensor) -> torch.Tensor:
        if self.config.positional == "learned":
            return params["W_pos"]
        table = sinusoidal(self.n_ctx, self.config.d_model).to(like.device, like.dtype)
        return table.expand(runs, -1, -1)

    def _fused_qkv(self, params: dict[str, torch.Tensor], layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """W_Q, W_K, W_V of a block as one (run, d_model, 3 * heads * d_head) matrix (and its bias)."""
        p, runs = f"blocks.{layer}.attn.", params["W_E"].shape[0]
        H, E, D = self.config.n_heads, self.d_head, self.config.d_model
        W_QKV = torch.cat([params[p + f"W_{n}"].permute(0, 2, 1, 3).reshape(runs, D, H * E) for n in "QKV"], -1)
        if not self.config.attn_bias:
            return W_QKV, None
        return W_QKV, torch.cat([params[p + f"b_{n}"].reshape(runs, H * E) for n in "QKV"], -1)

    def _qkv_table(self, params: dict[str, torch.Tensor], pos: torch.Tensor) -> torch.Tensor:
        """Layer 0's q, k, v for every (position, token): (run, n_ctx, d_vocab, 3, head, d_head).

        Layer 0's input at a position is W_E[token] + W_pos[position] (LayerNorm'd for pre-LN), so this
        small table holds every query, key and value any example can have.
        """
        runs, H, E = params["W_E"].shape[0], self.config.n_heads, self.d_head
        table = params["W_E"][:, None, :, :] + pos[:, :, None, :]  # (run, pos, d_vocab, d_model)
        if self.config.layernorm == "pre":
            table = _layer_norm(table, params, "blocks.0.ln1.")
        W_QKV, b_QKV = self._fused_qkv(params, 0)
        qkv = linear(table.reshape(runs, self.n_ctx * self.d_vocab, -1), W_QKV, b_QKV)
        return qkv.view(runs, self.n_ctx, self.d_vocab, 3, H, E)

    def _table_rows(self, tokens: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Row of each token in a (run * n_ctx * d_vocab)-row table; tokens (run, batch, n) sit at positions
        first..first+n-1."""
        runs, positions = tokens.shape[0], torch.arange(first, first + tokens.shape[2], device=tokens.device)
        rows = self.n_ctx * self.d_vocab
        return tokens + positions * self.d_vocab + torch.arange(runs, device=tokens.device)[:, None, None] * rows

    def _qkv_by_token(
        self, params: dict[str, torch.Tensor], pos: torch.Tensor, tokens: torch.Tensor, last: bool, first: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer 0's q, k, v (run, batch, pos, head, d_head) gathered from the (position, token) table.

        tokens (run, batch, n) sit at positions first..first+n-1. With `last`, q is gathered at the last
        position only (the only query the model reads).
        """
        H, E = self.config.n_heads, self.d_head
        qkv_table = self._qkv_table(params, pos).reshape(-1, 3, H * E)  # (run * pos * d_vocab, 3, h * e)
        index = self._table_rows(tokens, first)  # (run, batch, pos)
        q = F.embedding(index[:, :, -1:] if last else index, qkv_table[:, 0])
        k, v = F.embedding(index, qkv_table[:, 1:].reshape(len(qkv_table), 2 * H * E)).chunk(2, dim=-1)
        return q.unflatten(-1, (H, E)), k.unflatten(-1, (H, E)), v.unflatten(-1, (H, E))

    def _scores_by_token(
        self, params: dict[str, torch.Tensor], pos: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A 1-layer model's attention scores (run, batch, head, 1, pos) and values, by table lookup.

        Its only query is the "=" token's at the last position, the same for every example, so each
        score q . k depends on the key's (position, token) alone: one (position, token, head) table,
        gathered per example, replaces per-example keys and dot products.
        """
        H, E = self.config.n_heads, self.d_head
        qkv_table = self._qkv_table(params, pos)  # (run, pos, d_vocab, 3, head, d_head)
        q = qkv_table[:, -1, self.equals, 0]  # (run, head, d_head): the query of "=" at the last position
        score_table = (qkv_table[:, :, :, 1] * q[:, None, None]).sum(-1) / math.sqrt(E)  # (run, pos, d_vocab, head)
        index = self._table_rows(tokens)  # (run, batch, pos)
        scores = F.embedding(index, score_table.reshape(-1, H)).permute(0, 1, 3, 2).unsqueeze(3)
        v = F.embedding(index, qkv_table[:, :, :, 2].reshape(-1, H * E)).unflatten(-1, (H, E))
        return scores, v

    def _block(
        self,
        params: dict[str, torch.Tensor],
        layer: int,
        resid: torch.Tensor,
        hooks: Hooks,
        last: bool,
        generators: list[torch.Generator] | None,
        qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
        scores: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One block: (resid, (keys, values)); `resid` holds the last positions of the context.

        last: everything after keys/values is computed at the last position only.
        qkv: this block's queries, keys and values if already known (layer 0's token table).
        past: keys and values (run, batch, pos, head, d_head) of earlier positions, computed elsewhere.
        scores: attention scores if already known (then qkv carries only the values).
        """
        c, p = self.config, f"blocks.{layer}."
        H, E, D = c.n_heads, self.d_head, c.d_model
        runs, batch, n_own, _ = resid.shape
        resid = _hook(hooks, p + "hook_resid_pre", resid)  # (run, batch, pos, d_model)
        if qkv is None:
            x = _layer_norm(resid, params, p + "ln1.") if c.layernorm == "pre" else resid
            W_QKV, b_QKV = self._fused_qkv(params, layer)
            fused = linear(x.reshape(runs, batch * n_own, D), W_QKV, b_QKV).view(runs, batch, n_own, 3, H, E)
            q, k, v = fused.unbind(dim=3)  # each (run, batch, pos, head, d_head)
            q = q[:, :, -1:] if last else q
        else:
            q, k, v = qkv
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        if last:
            resid = resid[:, :, -1:]
        if scores is None:
            q, k, v = (_hook(hooks, p + f"attn.hook_{n}", t) for n, t in (("q", q), ("k", k), ("v", v)))
            # Contexts are 3-4 tokens: broadcast-multiply-sum beats thousands of tiny bmm calls.
            scores = (q[:, :, :, None] * k[:, :, None]).sum(-1).permute(0, 1, 4, 2, 3) / math.sqrt(E)
            # scores: (run, batch, head, q_pos, k_pos)
            if c.attention == "causal":  # queries are the last q.shape[2] positions of the keys' context
                n_keys = k.shape[2]
                query_pos = torch.arange(n_keys - q.shape[2], n_keys, device=q.device)
                future = torch.arange(n_keys, device=q.device)[None, :] > query_pos[:, None]  # (q_pos, k_pos)
                scores = scores.masked_fill(future, float("-inf"))
        scores = _hook(hooks, p + "attn.hook_attn_scores", scores)
        pattern = _hook(hooks, p + "attn.hook_pattern", _dropout(scores.softmax(dim=-1), c.dropout, generators))
        weights = pattern.permute(0, 1, 3, 4, 2)[..., None]  # (run, batch, q_pos, k_pos, head, 1)
        z = _hook(hooks, p + "attn.hook_z", (weights * v[:, :, None]).sum(3))  # (run, batch, q_pos, head, d_head)
        n_q = z.shape[2]
        attn_out = linear(z.reshape(runs, batch * n_q, H * E), params[p + "attn.W_O"].reshape(runs, H * E, D), None)
        if c.attn_bias:
            attn_out = attn_out + params[p + "attn.b_O"][:, None, :]
        attn_out = _hook(
            hooks, p + "hook_attn_out", _dropout(attn_out.view(runs, batch, n_q, D), c.dropout, generators)
        )
        resid = resid + attn_out
        if c.layernorm == "post":
            resid = _layer_norm(resid, params, p + "ln1.")
        resid = _hook(hooks, p + "hook_resid_mid", resid)
        x = _layer_norm(resid, params, p + "ln2.") if c.layernorm == "pre" else resid
        pre = linear(x.reshape(runs, batch * n_q, D), params[p + "mlp.W_in"], params.get(p + "mlp.b_in"))
        post = _hook(
            hooks, p + "mlp.hook_post", self.act(_hook(hooks, p + "mlp.hook_pre", pre.view(runs, batch, n_q, -1)))
        )
        mlp_out = linear(post.reshape(runs, batch * n_q, -1), params[p + "mlp.W_out"], params.get(p + "mlp.b_out"))
        resid = resid + _hook(
            hooks, p + "hook_mlp_out", _dropout(mlp_out.view(runs, batch, n_q, D), c.dropout, generators)
        )
        if c.layernorm == "post":
            resid = _layer_norm(resid, params, p + "ln2.")
        return _hook(hooks, p + "hook_resid_post", resid), (k, v)


def _gather_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """table (run, n, ...) indexed by rows (run, batch) -> (run, batch, ...)."""
    runs, n = table.shape[:2]
    flat = table.reshape(runs * n, -1)
    index = rows + torch.arange(runs, device=rows.device)[:, None] * n
    return F.embedding(index, flat).view(*rows.shape, *table.shape[2:])


def _hook(hooks: Hooks, name: str, value: torch.Tensor) -> torch.Tensor:
    fn = hooks.get(name)
    return value if fn is None else fn(value)


def _layer_norm(x: torch.Tensor, params: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """LayerNorm over d_model with per-run gain and bias (run, d_model)."""
    w, b = params[prefix + "w"], params[prefix + "b"]
    shape = (w.shape[0],) + (1,) * (x.dim() - 2) + (w.shape[1],)
    return F.layer_norm(x, (x.shape[-1],)) * w.view(shape) + b.view(shape)


def _dropout(x: torch.Tensor, rate: float, generators: list[torch.Generator] | None) -> torch.Tensor:
    """Inverted dropout with each run's own generator, so a run's masks do not depend on its stack."""
    return x if generators is None or rate == 0.0 else dropout(x, rate, generators)


def sinusoidal(n_ctx: int, d_model: int) -> torch.Tensor:
    """Fixed positional encodings (Vaswani et al. 2017): sin on even, cos on odd dimensions."""
    position = torch.arange(n_ctx, dtype=torch.float64)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    table = torch.zeros(n_ctx, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
    return table
