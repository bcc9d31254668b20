"""A trained groklab transformer as a TransformerLens HookedTransformer: the same logits (float32 tolerance) and,
under the same names, the same activations, for Nanda's model and a 2-layer pre-LayerNorm one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import groklab
from groklab.config import SpecError

NANDA = {  # nanda-modadd at a small size
    "task": {"modulus": 23, "train_fraction": 0.5},
    "model": {
        "name": "transformer",
        "sequence": "a b =",
        "n_layers": 1,
        "d_model": 32,
        "n_heads": 4,
        "d_mlp": 64,
        "layernorm": "none",
        "attn_bias": False,
        "unembed_bias": False,
        "init": "nanda",
    },  # fmt: skip
    "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 1.0, "betas": [0.9, 0.98]},
    "train": {"steps": 30, "eval_every": 10},
    "measures": {"names": "none", "snapshot_steps": [0, 30]},
}
LAYERNORM = {**NANDA, "model": {**NANDA["model"], "n_layers": 2, "layernorm": "pre", "attn_bias": True,
                                "unembed_bias": True, "activation": "gelu", "attention": "full"}}  # fmt: skip


@pytest.mark.parametrize(("name", "spec"), [("nanda", NANDA), ("layernorm", LAYERNORM)])
def test_the_hooked_transformer_computes_what_groklab_computes(name: str, spec: dict, tmp_path: Path) -> None:
    result = groklab.run({**spec, "name": name}, out=tmp_path / name, progress=False)
    run_id = result.rows[0]["run_id"]
    model, params, buffers = result.model(run_id)
    pairs = torch.cartesian_prod(torch.arange(23), torch.arange(23))
    tokens = model.prepare(pairs[None])  # (1, n, 3): a b =
    logits, cache = model.run_with_cache(params, tokens, buffers=buffers)
    lens = groklab.to_hooked_transformer(result, run_id)
    with torch.no_grad():
        lens_logits, lens_cache = lens.run_with_cache(tokens[0])
    torch.testing.assert_close(lens_logits[:, -1], logits[0], rtol=1e-4, atol=1e-4)
    assert set(cache) <= set(lens_cache.keys())  # every groklab hook point is a TransformerLens one
    for hook_name, value in cache.items():
        theirs = lens_cache[hook_name]
        ours = value[0].expand_as(theirs) if hook_name == "hook_pos_embed" else value[0]
        torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4, msg=hook_name)
    if name == "layernorm":
        assert "blocks.1.ln2.hook_normalized" in lens_cache and lens.cfg.normalization_type == "LN"
    # a checkpoint too, and it is not the final model (not vacuous: the weights moved in 30 steps)
    start = groklab.to_hooked_transformer(result, run_id, step=0)
    with torch.no_grad():
        assert not torch.allclose(start(tokens[0])[:, -1], lens_logits[:, -1], atol=1e-3)


def test_what_transformer_lens_cannot_hold_is_refused(tmp_path: Path) -> None:
    post = {**NANDA, "model": {**NANDA["model"], "layernorm": "post"}, "name": "post"}
    result = groklab.run(post, out=tmp_path / "post", progress=False)
    with pytest.raises(SpecError, match=r"^model.layernorm: post; allowed: none, pre"):
        groklab.to_hooked_transformer(result, result.rows[0]["run_id"])
    mlp = groklab.run(
        {"task": {"modulus": 7}, "train": {"steps": 2}, "name": "mlp"}, out=tmp_path / "mlp", progress=False
    )
    with pytest.raises(SpecError, match=r"^model.name: mlp; allowed: transformer"):
        groklab.to_hooked_transformer(mlp, mlp.rows[0]["run_id"])
