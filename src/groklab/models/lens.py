"""A groklab transformer as a TransformerLens HookedTransformer (the `lens` extra: transformer-lens < 4, the last
versions with HookedTransformer; TransformerLens 4 wraps Hugging Face models instead, which have no form for
these models).

The parameter names are TransformerLens' already (models/transformer.py), so the conversion is a renaming of the
embedding and unembedding (W_E -> embed.W_E, W_pos -> pos_embed.W_pos, W_U -> unembed.W_U, b_U -> unembed.b_U)
and zeros for the biases a groklab model leaves out. The logits are TransformerLens' at the "=" position (the
last): groklab reads only that one. What TransformerLens cannot express is refused: sinusoidal positions, and
LayerNorm after the residual additions or in place of the stream (post, pre_stream).
"""

from __future__ import annotations

from typing import Any

import torch

from groklab.config import SpecError, TransformerModel
from groklab.models.protocol import Model

RENAMED = {"W_E": "embed.W_E", "W_pos": "pos_embed.W_pos", "W_U": "unembed.W_U", "b_U": "unembed.b_U"}
"""groklab parameter -> TransformerLens state_dict key, where they differ."""


def hooked_transformer_config(model: Model) -> Any:
    """The HookedTransformerConfig of a groklab transformer (a SpecError for what TransformerLens cannot express)."""
    from transformer_lens import HookedTransformerConfig

    config = model.config
    if not isinstance(config, TransformerModel):
        raise SpecError(f"model.name: {config.name}; allowed: transformer (TransformerLens holds transformers)")
    if config.positional != "learned":
        raise SpecError(f"model.positional: {config.positional}; allowed: learned (TransformerLens' standard)")
    if config.layernorm not in ("none", "pre"):
        raise SpecError(f"model.layernorm: {config.layernorm}; allowed: none, pre (TransformerLens' pre-LayerNorm)")
    if config.activation not in ("relu", "gelu", "silu"):
        raise SpecError(f"model.activation: {config.activation}; allowed: relu, gelu, silu (TransformerLens' act_fn)")
    shapes = model.shapes()
    return HookedTransformerConfig(
        n_layers=config.n_layers,
        d_model=config.d_model,
        n_ctx=shapes["W_pos"][0],
        d_head=shapes["blocks.0.attn.W_Q"][-1],
        n_heads=config.n_heads,
        d_mlp=config.d_mlp,
        d_vocab=shapes["W_E"][0],
        d_vocab_out=model.n_classes,
        act_fn=config.activation,
        normalization_type="LN" if config.layernorm == "pre" else None,
        attention_dir="causal" if config.attention == "causal" else "bidirectional",
        positional_embedding_type="standard",
        eps=1e-5,  # torch.nn.functional.layer_norm's, which groklab uses
        device="cpu",
        seed=0,
    )


def to_hooked_transformer(model: Model, weights: dict[str, torch.Tensor]) -> Any:
    """A transformer_lens.HookedTransformer holding one run's weights (a state_dict without the run axis)."""
    from transformer_lens import HookedTransformer

    lens = HookedTransformer(hooked_transformer_config(model))
    target = lens.state_dict()
    state = {RENAMED.get(name, name): tensor.detach().to(torch.float32) for name, tensor in weights.items()}
    unknown = sorted(set(state) - set(target))
    if unknown:
        raise SpecError(f"weights: {', '.join(unknown)} have no place in a HookedTransformer")
    for key, tensor in target.items():  # biases groklab leaves out, and TransformerLens' masks
        state.setdefault(key, tensor if key.endswith(("mask", "IGNORE")) else torch.zeros_like(tensor))
    lens.load_state_dict(state)
    lens.eval()
    return lens
