"""Exact shortcuts for training the transformer: the same logits as models/transformer.py, less work.

The answer is read at the last ("=") position only, and the inputs are short sequences over a small
vocabulary, so much of the full computation is either never read or repeated across examples. Each
shortcut below is exact (tests/unit/test_oracles.py checks logits and gradients of this model and of the
plain one against a reference nn.Module, for every model option). What each saves, added one by one
(benchmarks/bench_shortcuts.py, ms per training step on the built-in specs; 2026-11-24, x86_64, 2 cores,
torch 2.13.0 CPU):

    shortcut                                   nanda-modadd (1 layer)     power-division (2 layers)
    none: every position                       146.3                      48.2
    the last block at "=" only                  69.5  (2.10x)             36.5  (1.32x)
    layer 0's q/k/v from a (position, token)    46.3  (3.16x)             34.5  (1.39x)
      table
    1-layer scores from a table | shared        37.9  (3.86x)             30.8  (1.57x)
      "a op" prefix

- The last block at "=" only: its query, attention output, MLP and unembedding are computed at the last
  position alone (keys and values still see every position): nanda-modadd's MLP, its largest cost, runs
  on 1 of 3 positions.
- Layer 0's table: its input at a position is W_E[token] + W_pos[position], so its queries, keys and
  values are computed once per (position, vocabulary entry) — 3 x 115 rows for nanda-modadd instead of
  3 x 3831 — and gathered per example. With rotary positions each entry's query and key is turned by its
  position in the table (the modern block: 3.7x at K = 1, 2.7x at K = 8 over every position; bench_modern.py).
- One-layer scores from a table: the only query read is that of "=", the same for every example, so
  each score q . k depends on the key's (position, token) alone: a (position, token, head) table replaces
  per-example keys and dot products.
- A shared prefix: in a causal multi-layer "a op b =" model positions "a op" see only a and the constant
  op token, so their keys and values in every layer are computed once per value of a (97 prefixes
  instead of 512 examples per batch for power-division) and gathered per example.

Any hook turns every shortcut off (the plain model runs, so every hook sees every position).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from groklab.models.layers import Hooks, Params, linear
from groklab.models.transformer import PRE, Transformer, attention_scores, rotary

NO_HOOKS: Hooks = {}


class ShortcutTransformer(Transformer):
    """The transformer of models/transformer.py, trained and evaluated through exact shortcuts."""

    def forward(
        self,
        params: Params,
        tokens: torch.Tensor,
        hooks: Hooks | None = None,
        *,
        buffers: Params | None = None,
        generators: list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Logits at the last position (run, batch, n_classes); the plain computation when hooks are set.

        The shortcuts assume sequences built by `prepare` (the last token is always "=").
        """
        c = self.config
        if hooks:
            return super().forward(params, tokens, hooks, generators=generators)
        if c.sequence == "a op b =" and c.attention == "causal" and c.n_layers > 1:
            if generators is None or c.dropout == 0.0:  # the prefix's dropout masks would differ per example
                return self._shared_prefix(params, tokens)
        if c.n_layers == 1:
            return self._one_layer(params, tokens, generators)
        return self._last_position(params, tokens, generators)

    def _one_layer(
        self, params: Params, tokens: torch.Tensor, generators: list[torch.Generator] | None
    ) -> torch.Tensor:
        """A 1-layer model: scores from the (position, token, head) table; the block at "=" only."""
        runs, D = tokens.shape[0], self.config.d_model
        pos = self.positions(params, runs, params["W_E"])  # (run, n_ctx, d_model)
        run_offsets = torch.arange(runs, device=tokens.device)[:, None, None] * self.d_vocab
        equals = F.embedding(tokens[:, :, -1:] + run_offsets, params["W_E"].reshape(runs * self.d_vocab, D))
        resid = equals + pos[:, None, -1:]  # (run, batch, 1, d_model): the residual stream at "="
        scores, v = self._scores_by_token(params, pos, tokens)
        attn_out = self.attend(params, 0, scores, v, NO_HOOKS, generators)
        return self.unembed(params, self.mlp_block(params, 0, resid, attn_out, NO_HOOKS, generators), NO_HOOKS)

    def _last_position(
        self, params: Params, tokens: torch.Tensor, generators: list[torch.Generator] | None
    ) -> torch.Tensor:
        """Layer 0's q/k/v from the (position, token) table; the last block at "=" only."""
        resid = self.embed(params, tokens, NO_HOOKS)  # (run, batch, pos, d_model)
        pos = self.positions(params, tokens.shape[0], resid)
        last_layer = self.config.n_layers - 1
        for layer in range(self.config.n_layers):
            last = layer == last_layer
            if layer == 0:
                q, k, v = self._qkv_by_token(params, pos, tokens, last)
            else:
                q, k, v = self.qkv(params, layer, resid)
                q, k = self._turned(q, 0), self._turned(k, 0)
            if last:
                q, resid = q[:, :, -1:], resid[:, :, -1:]
            attn_out = self.attend(
                params, layer, attention_scores(q, k, self.config.attention), v, NO_HOOKS, generators
            )
            resid = self.mlp_block(params, layer, resid, attn_out, NO_HOOKS, generators)
        return self.unembed(params, resid, NO_HOOKS)

    def _shared_prefix(self, params: Params, tokens: torch.Tensor) -> torch.Tensor:
        """Positions "a op" computed once per value of a, their keys and values gathered per example.

        Under causal attention positions 0 and 1 of "a op b =" see only a and the constant op token, so
        their keys and values in every layer are a function of a alone: a pass over the p possible
        prefixes replaces half of the per-example work.
        """
        runs, D, P = tokens.shape[0], self.config.d_model, 2
        device = tokens.device
        a_values = torch.arange(self.vocab, device=device)
        prefix = torch.stack([a_values, torch.full_like(a_values, self.op)], dim=-1).expand(runs, -1, -1)
        run_offsets = torch.arange(runs, device=device)[:, None, None] * self.d_vocab
        W_E = params["W_E"].reshape(runs * self.d_vocab, D)
        pos = self.positions(params, runs, W_E)  # (run, n_ctx, d_model)
        resid_prefix = F.embedding(prefix + run_offsets, W_E) + pos[:, None, :P]  # (run, p, P, d_model)
        resid = F.embedding(tokens[:, :, P:] + run_offsets, W_E) + pos[:, None, P:]  # (run, batch, n_ctx-P, d)
        a_rows = tokens[:, :, 0]  # (run, batch): which prefix each example has
        last_layer = self.config.n_layers - 1
        for layer in range(self.config.n_layers):
            last = layer == last_layer
            if layer == 0:
                q_prefix, k_prefix, v_prefix = self._qkv_by_token(params, pos, prefix, False)
                q, k, v = self._qkv_by_token(params, pos, tokens[:, :, P:], last, first=P)
            else:
                q_prefix, k_prefix, v_prefix = self.qkv(params, layer, resid_prefix)
                q_prefix, k_prefix = self._turned(q_prefix, 0), self._turned(k_prefix, 0)
                q, k, v = self.qkv(params, layer, resid)
                q, k = self._turned(q, P), self._turned(k, P)
            if last:
                q, resid = q[:, :, -1:], resid[:, :, -1:]
            else:  # the prefix's own residual stream feeds the next layer's keys and values
                scores = attention_scores(q_prefix, k_prefix, "causal")
                attn_prefix = self.attend(params, layer, scores, v_prefix, NO_HOOKS, None)
                resid_prefix = self.mlp_block(params, layer, resid_prefix, attn_prefix, NO_HOOKS, None)
            k = torch.cat([_gather_rows(k_prefix, a_rows), k], dim=2)  # (run, batch, pos, head, d_head)
            v = torch.cat([_gather_rows(v_prefix, a_rows), v], dim=2)
            attn_out = self.attend(params, layer, attention_scores(q, k, "causal"), v, NO_HOOKS, None)
            resid = self.mlp_block(params, layer, resid, attn_out, NO_HOOKS, None)
        return self.unembed(params, resid, NO_HOOKS)

    # -- the (position, token) tables ------------------------------------------------------------------

    def _qkv_table(self, params: Params, pos: torch.Tensor) -> torch.Tensor:
        """Layer 0's q, k, v for every (position, token): (run, n_ctx, d_vocab, 3, head, d_head).

        Layer 0's input at a position is W_E[token] + W_pos[position] (LayerNorm'd for pre-LN), so this
        small table holds every query, key and value any example can have.
        """
        runs, H, E = params["W_E"].shape[0], self.config.n_heads, self.d_head
        table = params["W_E"][:, None, :, :] + pos[:, :, None, :]  # (run, pos, d_vocab, d_model)
        if self.config.layernorm in PRE:
            table = self.normalize(table, params, "blocks.0.ln1.")
        W_QKV, b_QKV = self.fused_qkv(params, 0)
        qkv = linear(table.reshape(runs, self.n_ctx * self.d_vocab, -1), W_QKV, b_QKV)
        qkv = qkv.view(runs, self.n_ctx, self.d_vocab, 3, H, E)
        if self.config.positional != "rotary":
            return qkv
        # rotary positions: each (position, token)'s query and key turned by that position, once per table entry
        qk = qkv[:, :, :, :2].permute(0, 2, 3, 1, 4, 5).flatten(1, 2)  # (run, d_vocab * 2, pos, head, d_head)
        turned = rotary(qk, 0).unflatten(1, (self.d_vocab, 2)).permute(0, 3, 1, 2, 4, 5)
        return torch.cat([turned, qkv[:, :, :, 2:]], dim=3)

    def _turned(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Queries or keys (run, batch, pos, head, d_head) at positions start, start + 1, ... turned by them
        (rotary positions); as they are otherwise."""
        return rotary(x, start) if self.config.positional == "rotary" else x

    def _table_rows(self, tokens: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Row of each token in a (run * n_ctx * d_vocab)-row table; tokens (run, batch, n) sit at positions
        first..first+n-1."""
        runs, positions = tokens.shape[0], torch.arange(first, first + tokens.shape[2], device=tokens.device)
        rows = self.n_ctx * self.d_vocab
        return tokens + positions * self.d_vocab + torch.arange(runs, device=tokens.device)[:, None, None] * rows

    def _qkv_by_token(
        self, params: Params, pos: torch.Tensor, tokens: torch.Tensor, last: bool, first: int = 0
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
        self, params: Params, pos: torch.Tensor, tokens: torch.Tensor
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


def _gather_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """table (run, n, ...) indexed by rows (run, batch) -> (run, batch, ...)."""
    runs, n = table.shape[:2]
    flat = table.reshape(runs * n, -1)
    index = rows + torch.arange(runs, device=rows.device)[:, None] * n
    return F.embedding(index, flat).view(*rows.shape, *table.shape[2:])
