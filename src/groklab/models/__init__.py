"""Models with a leading run axis: parameters are dicts of tensors shaped (run, ...)."""

from __future__ import annotations

from groklab.config import MLPModel, TransformerModel
from groklab.data.dataset import RunData
from groklab.models.mlp import MLP, stack_params
from groklab.models.transformer import Transformer

__all__ = ["MLP", "Transformer", "build_model", "stack_params"]


def build_model(config: MLPModel | TransformerModel, data: RunData) -> MLP | Transformer:
    """The model for a model config and the shape of a run's data."""
    if isinstance(config, TransformerModel):
        assert data.vocab is not None, "transformers need token inputs (checked by RunConfig)"
        return Transformer(config, vocab=data.vocab, n_classes=data.n_classes)
    return MLP(config, vocab=data.vocab, input_dim=data.input_dim, n_classes=data.n_classes)
