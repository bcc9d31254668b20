"""Models with a leading run axis: parameters are dicts of tensors shaped (run, ...).

protocol.py    Model: the interface the engine and the measures use (one path for every model)
layers.py      the shared building blocks: batched linear maps, normalization, dropout, hook points
mlp.py         the MLP (Gromov; the parity and Doshi papers; seed 003's token MLP)
transformer.py the decoder-only transformer, every position computed (Nanda et al.; Power et al.)
shortcuts.py   the same transformer through exact shortcuts (what training runs)
reference.py   reference oracles: one run as a plain torch.nn.Module, for tests and export
module.py      your own torch.nn.Module, K runs of it stacked through torch.func
rfm.py         a Recursive Feature Machine: a kernel machine that fits in closed form (no network)
"""

from __future__ import annotations

from torch import nn

from groklab.config import KernelModel, MLPModel, ModuleModel, RunConfig, TransformerModel
from groklab.data.dataset import RunData
from groklab.models.layers import Hooks, Params, stack_params
from groklab.models.mlp import MLP
from groklab.models.module import StackedModule, build_module, check_module
from groklab.models.protocol import Model
from groklab.models.reference import ReferenceMLP, ReferenceTransformer
from groklab.models.rfm import RecursiveFeatureMachine
from groklab.models.shortcuts import ShortcutTransformer
from groklab.models.transformer import Transformer

__all__ = [
    "MLP",
    "Hooks",
    "Model",
    "Params",
    "ReferenceMLP",
    "RecursiveFeatureMachine",
    "ReferenceTransformer",
    "ShortcutTransformer",
    "StackedModule",
    "Transformer",
    "build_model",
    "build_module",
    "check_model",
    "reference_model",
    "stack_params",
]


def build_model(config: MLPModel | TransformerModel | ModuleModel | KernelModel, data: RunData) -> Model:
    """The model for a model config and the shape of a run's data."""
    if isinstance(config, KernelModel):
        assert data.vocab is not None, "a kernel machine reads one-hot tokens (checked by RunConfig)"
        n_train, positions = data.x_train.shape[:2]
        return RecursiveFeatureMachine(config, data.vocab, positions, n_train, data.n_classes)
    if isinstance(config, ModuleModel):
        return StackedModule(config, data.x_train[:2], data.n_classes, data.vocab)
    if isinstance(config, TransformerModel):
        assert data.vocab is not None, "transformers need token inputs (checked by RunConfig)"
        return ShortcutTransformer(config, vocab=data.vocab, n_classes=data.n_classes)
    return MLP(config, vocab=data.vocab, input_dim=data.input_dim, n_classes=data.n_classes)


def check_model(config: RunConfig) -> None:
    """SpecError, one line naming the key, for a model that cannot train on its run's task: a user's module is built
    and tried on two examples (models/module.py: check_module); the built-ins are checked by their config."""
    if isinstance(config.model, ModuleModel):
        check_module(config)


def reference_model(model: Model, params: Params, run: int, buffers: Params | None = None) -> nn.Module:
    """Run `run` of a stack as a plain torch.nn.Module (evaluation mode), written without the run axis."""
    if isinstance(model, StackedModule):
        return model.reference(params, run, buffers)
    if isinstance(model, Transformer):
        return ReferenceTransformer.from_run(model, params, run, buffers)
    return ReferenceMLP.from_run(model, params, run, buffers)  # type: ignore[arg-type]
