"""Models with a leading run axis: parameters are dicts of tensors shaped (run, ...)."""

from __future__ import annotations

from groklab.config import MLPModel
from groklab.data.dataset import RunData
from groklab.models.mlp import MLP, stack_params

__all__ = ["MLP", "build_model", "stack_params"]


def build_model(config: MLPModel, data: RunData) -> MLP:
    """The model for a model config and the shape of a run's data."""
    return MLP(config, vocab=data.vocab, input_dim=data.input_dim, n_classes=data.n_classes)
