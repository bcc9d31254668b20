"""What the plan needs of a model (stack sizes, the memory estimate, the largest tensor), from the run's config and its
task's sizes, so that engine/plan.py never asks which model it is. Estimates, within ~2x of what torch holds: they
exist to refuse what cannot fit before anything is built, and to choose stack sizes, not to plan to the byte."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass

import torch

from groklab.config import KernelModel, MLPModel, ModuleModel, RunConfig, TransformerModel
from groklab.config.tasks import TaskSizes
from groklab.data import task_sizes
from groklab.models.mlp import MLP
from groklab.models.module import StackedModule
from groklab.models.rfm import RecursiveFeatureMachine
from groklab.models.transformer import Transformer


@dataclass(frozen=True)
class ModelSizes:
    """A model's sizes for one run, per example where it says so."""

    shapes: dict[str, tuple[int, ...]]
    """Parameter name -> shape (no run axis)."""
    flops: float
    """FLOPs of a training step per example (forward + backward ~ 3x the forward's multiply-adds x 2)."""
    width: int
    """Elements of the activations a training step keeps per example (for its backward pass)."""
    scores: int
    """Scores per example the loss reads (the logits; with templates, a distance to every template)."""
    largest: int
    """Elements per example of the largest single activation (GPU kernels index 2^31 elements at most)."""
    size_key: str
    """The spec key that sets the model's width (named when a stack does not fit)."""


def model_sizes(config: RunConfig) -> ModelSizes:
    """The sizes of `config`'s model on its task."""
    model, sizes = config.model, task_sizes(config.task)
    if isinstance(model, TransformerModel):
        return _transformer(model, sizes)
    if isinstance(model, ModuleModel):
        return _module(config)
    if isinstance(model, KernelModel):
        return _kernel_machine(model, sizes)
    return _mlp(model, sizes)


def _transformer(model: TransformerModel, sizes: TaskSizes) -> ModelSizes:
    assert sizes.vocab is not None, "transformers read tokens (checked by RunConfig)"
    positions = 3 if model.sequence == "a b =" else 4
    per_position = 4 * model.d_model**2 + 2 * model.d_model * model.d_mlp
    classes = sizes.n_classes
    return ModelSizes(
        shapes=Transformer(model, sizes.vocab, classes).shapes(),
        flops=6.0 * (model.n_layers * positions * per_position + model.d_model * classes),
        width=model.n_layers * positions * (8 * model.d_model + 3 * model.d_mlp + 2 * model.n_heads * positions),
        scores=classes,
        largest=positions * max(model.d_mlp, model.d_model, model.n_heads * positions, classes),
        size_key="model.d_model",
    )


def _mlp(model: MLPModel, sizes: TaskSizes) -> ModelSizes:
    d_in, n_out, classes = sizes.input_dim, sizes.n_classes, sizes.n_classes
    embedded = model.embedding_dim * 4 if model.embedding != "one_hot" else 0
    if model.embedding != "one_hot":
        d_in = (1 if model.embedding == "summed" else 4 if model.sequence == "a op b =" else 2) * model.embedding_dim
    templates = model.template_dim if model.readout == "templates" else 1
    if model.readout == "templates":  # the readout's vector, then its distance to every template
        n_out = model.template_dim * (1 + n_out)
    weights = d_in * model.width + (model.depth - 1) * model.width**2 + model.width * n_out
    return ModelSizes(
        shapes=MLP(model, sizes.vocab, sizes.input_dim, classes).shapes(),
        flops=6.0 * weights,
        width=model.depth * 4 * model.width + embedded,
        scores=classes * templates,
        largest=max(model.width, classes * templates, embedded),
        size_key="model.width",
    )


def _kernel_machine(model: KernelModel, sizes: TaskSizes) -> ModelSizes:
    """An RFM step solves an n x n system and forms K K^T: ~n^2 multiply-adds per training example, each twice; an
    evaluated example is one row of the kernel (n) and its d-dimensional distances."""
    assert sizes.vocab is not None, "a kernel machine reads one-hot tokens (checked by RunConfig)"
    n, d = sizes.n_train, sizes.input_dim * sizes.vocab
    return ModelSizes(
        shapes=RecursiveFeatureMachine(model, sizes.vocab, sizes.input_dim, n, sizes.n_classes).shapes(),
        flops=4.0 * n * (n + d),
        width=4 * n + 2 * d,
        scores=sizes.n_classes,
        largest=max(n, d, sizes.n_classes),
        size_key="task.train_fraction",
    )


def _module(config: RunConfig) -> ModelSizes:
    """A user's module, measured: its parameters, and its activations on two inputs shaped as the task's (zeros: no
    data is made, so a task too large to make is refused by the plan before anything is allocated)."""
    return _measured_module(json.dumps(config.model_dump(mode="json", include={"task", "model"}), sort_keys=True))


@functools.lru_cache(maxsize=16)
def _measured_module(key: str) -> ModelSizes:
    config = RunConfig.model_validate(json.loads(key))
    sizes = task_sizes(config.task)
    example = torch.zeros(2, sizes.input_dim, dtype=torch.int64 if sizes.vocab is not None else torch.float32)
    model = StackedModule(config.model, example, sizes.n_classes, sizes.vocab)  # type: ignore[arg-type]
    shapes = model.shapes()
    activations = model.activation_sizes
    parameters = sum(math.prod(shape) for shape in shapes.values())
    return ModelSizes(
        shapes=shapes,
        flops=6.0 * parameters,  # every weight used once per example: a lower bound where weights are shared
        width=sum(activations.values()),
        scores=sizes.n_classes,
        largest=max(activations.values(), default=1),
        size_key="model.kwargs",
    )
