"""The one interface every model implements, so that the engine and the measures take one path for all.

Parameters are dicts of tensors with a leading run axis; a model object holds no parameters, only shapes.
Hook points carry TransformerLens names in the built-in models (in both, `blocks.0.mlp.hook_pre` is the first
hidden layer's pre-activation: their `neuron_hook`), and module paths in a user's module (models/module.py).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from groklab.models.layers import Hooks, Params


class Model(Protocol):
    """A model of one stack: what its inputs, parameters and activations are, and how to run them."""

    config: Any
    n_classes: int
    neurons_from_weights: bool
    """True when the first hidden layer's pre-activation is E_a[a] + E_b[b] (+ bias), E_* the blocks given by
    `operand_embeddings`: then neuron responses are read off the weights instead of a forward pass."""
    trains_differently: bool
    """True when a training pass differs from evaluation (dropout, BatchNorm batch statistics)."""

    @property
    def readout(self) -> tuple[str, ...]:
        """Names of the readout's parameters (the last layer: the slingshot's norm)."""
        ...

    @property
    def readout_input(self) -> str:
        """The hook point whose activation the readout reads: the run's representation of an input."""
        ...

    @property
    def feature_hooks(self) -> tuple[str, ...]:
        """The hook points of each layer's features, first layer first (what feature_rank reads at the readout's
        position): the MLP's block outputs; the transformer's MLP hidden layer and residual stream per block."""
        ...

    @property
    def embeddings(self) -> tuple[str, ...]:
        """Parameters that are tables of token vectors, read by index (Muon leaves them to AdamW, as the readout)."""
        ...

    @property
    def neuron_hook(self) -> str:
        """The hook point of the first hidden layer's pre-activations (the neurons the Fourier and IPR measures
        read)."""
        ...

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A task's inputs (run, n, ...) as the model consumes them (e.g. token sequences); once per stack."""
        ...

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape of one run (no run axis)."""
        ...

    def init(self, seed: int, dtype: torch.dtype = torch.float32) -> Params:
        """Parameters of one run, drawn on the CPU from the run's own init stream (device-independent)."""
        ...

    def buffers(self, seeds: list[int], device: torch.device, dtype: torch.dtype) -> Params:
        """State that is not trained (BatchNorm running statistics, label templates) for runs with these seeds;
        {} if none."""
        ...

    def layout(self, params: Params) -> Params:
        """The same values in the memory layout the model computes fastest with (shapes and names unchanged)."""
        ...

    def forward(
        self,
        params: Params,
        x: torch.Tensor,
        hooks: Hooks | None = None,
        *,
        buffers: Params | None = None,
        generators: list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Logits (run, batch, n_classes). generators (one per run) make it a training pass."""
        ...

    def run_with_cache(
        self, params: Params, x: torch.Tensor, *, buffers: Params | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Evaluation-mode logits and every hooked activation (no gradients)."""
        ...

    def hook_names(self) -> list[str]:
        """Every hook point, in the order the forward pass reaches them."""
        ...

    def at_readout(self, activation: torch.Tensor) -> torch.Tensor:
        """A hooked activation at the position the readout reads: (run, batch, [pos,] d) -> (run, batch, d)."""
        ...

    def neuron_weights(self, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """First hidden layer: incoming (run, N, fan_in) and outgoing (run, N, fan_out) weights per neuron."""
        ...

    def silence_neurons(self, params: Params, keep: torch.Tensor) -> Params:
        """The parameters with the first hidden layer's neurons where keep (run, N) is 0 cut off (their outgoing
        weights zeroed: pruning)."""
        ...

    def matrices(self, params: Params) -> dict[str, torch.Tensor]:
        """Every weight matrix as (run, fan_in, fan_out) (the spectral and weight measures read them)."""
        ...

    def operand_embeddings(self, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """How the network first represents operands a and b of a pair task: (run, p, d) each."""
        ...


@runtime_checkable
class FitsInClosedForm(Protocol):
    """A model that a step fits without gradients (a kernel machine, models/rfm.py): the stack calls `fit` instead of
    taking a gradient and an optimizer step."""

    def fit(self, params: Params, x: torch.Tensor, y: torch.Tensor, step: int) -> None:
        """One step on the batch x (run, n, ...), labels y (run, n): the parameters updated in place."""
        ...


@runtime_checkable
class TrainsOnTheHost(Protocol):
    """A model whose training pass may read the host (a user's module with dropout trains run by run, each pass
    seeded from a number its generator draws): when `trains_on_the_host` is True its step is not captured in a
    CUDA graph (engine/captured.py), which replays kernels and nothing the host computes."""

    @property
    def trains_on_the_host(self) -> bool: ...


def run_with_cache(
    model: Model, params: Params, x: torch.Tensor, buffers: Params | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Evaluation-mode logits and every hooked activation of any model (no gradients)."""
    cache: dict[str, torch.Tensor] = {}

    def store(name: str) -> Any:
        def record(value: torch.Tensor) -> torch.Tensor:
            cache[name] = value.detach()
            return value

        return record

    with torch.no_grad():
        logits = model.forward(params, x, {n: store(n) for n in model.hook_names()}, buffers=buffers)
    return logits, cache
