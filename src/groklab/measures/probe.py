"""What a measure reads: a stack's parameters, model and data, and tensors derived from them once.

Every tensor carries the run axis first. The model-specific questions (where are the hidden neurons,
which weights are the last layer, what are the operands' embeddings) are answered by the model through
its interface (models/protocol.py: hook points, readout, neuron weights), so that each measure is
written once for every model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch

from groklab.config import MeasuresConfig, ModularTask, ParityTask, RunConfig
from groklab.data import modular_table
from groklab.data.dataset import RunData
from groklab.models import Hooks, Model, Params


def is_modular(config: RunConfig) -> bool:
    """A modular-arithmetic task: operands are residues, so Fourier measures over Z_p apply."""
    return isinstance(config.task, ModularTask)


def is_additive(config: RunConfig) -> bool:
    """Addition or subtraction mod p: the logits' key directions are cos/sin(w_k (a +- b))."""
    return is_modular(config) and config.task.operation in ("add", "sub")  # type: ignore[union-attr]


def is_parity(config: RunConfig) -> bool:
    """A sparse-parity task."""
    return isinstance(config.task, ParityTask)


def is_noisy(config: RunConfig) -> bool:
    """Some training labels are corrupted (Doshi et al.)."""
    return getattr(config.task, "label_noise", 0.0) > 0  # the teacher's regression has no labels to corrupt


def is_gromov_mlp(config: RunConfig) -> bool:
    """The MLP of Gromov 2023 on modular addition: one-hot inputs, one hidden layer, x^2, no bias."""
    model = config.model
    return (
        is_modular(config)
        and config.task.operation == "add"  # type: ignore[union-attr]
        and model.name == "mlp"
        and model.embedding == "one_hot"
        and model.sequence == "a b"
        and model.depth == 1
        and model.activation == "quadratic"
        and not model.bias
    )


@dataclass(kw_only=True, eq=False)
class Probe:
    """One evaluation of one stack: step, parameters (detached) and cached derived tensors."""

    step: int
    params: Params
    """The stack's parameters (run axis first), detached on construction."""
    model: Model
    configs: list[RunConfig]
    data: list[RunData]
    init_params: Params
    stacked: dict[str, torch.Tensor] = field(default_factory=dict)
    """The stack's tensors: x_train, y_train, x_test, y_test (as the model consumes them); train_kept (run, n_train)
    0/1 once some run's training set shrank (task.on_generalized)."""
    eval_logits: list[torch.Tensor] = field(default_factory=list)
    """(train, test) logits of this step's evaluation, if it just ran (reused, not recomputed)."""
    buffers: Params = field(default_factory=dict)
    """The model's running statistics (BatchNorm), if it has any."""
    ids: list[str] = field(default_factory=list)
    """The runs' ids, in stack order (keys of at_init)."""
    update_norm: torch.Tensor | None = None
    """(run,) |theta_{t+1} - theta_t| of the step just taken, after a measured step (what update measures read)."""
    at_init: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    """(what, run id) -> a tensor that depends only on the run's init and data (the NTK at init): the stack keeps
    this dict for its whole life, so a measure computes such a tensor once per run, not at every evaluation."""

    def __post_init__(self) -> None:
        self.params = {name: p.detach() for name, p in self.params.items()}

    @property
    def config(self) -> RunConfig:
        """The first run's config: what the runs of a stack share (task, model, measures options)."""
        return self.configs[0]

    @property
    def options(self) -> MeasuresConfig:
        return self.config.measures

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def forward(self, x: torch.Tensor, params: Params | None = None, hooks: Hooks | None = None) -> torch.Tensor:
        """Evaluation-mode logits (run, n, C) of inputs x as the model consumes them (default: own params)."""
        with torch.no_grad():
            return self.model.forward(self.params if params is None else params, x, hooks, buffers=self.buffers)

    def activation(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The activation at hook point `name` for inputs x, at the readout's position: (run, n, d)."""
        return self.activations([name], x)[name]

    def activations(self, names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The activations at several hook points in one pass, at the readout's position: name -> (run, n, d)."""
        captured: dict[str, torch.Tensor] = {}

        def keep(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
            return lambda activation: captured.setdefault(name, activation)

        self.forward(x, hooks={name: keep(name) for name in names})
        return {name: self.model.at_readout(captured[name]) for name in names}

    @cached_property
    def train_logits(self) -> torch.Tensor:
        """Evaluation-mode logits on the training set (run, n_train, C): this step's evaluation's, if it ran."""
        return self.eval_logits[0] if self.eval_logits else self.forward(self.stacked["x_train"])

    @property
    def runs(self) -> int:
        return next(iter(self.params.values())).shape[0]

    # -- weights -----------------------------------------------------------------------------------

    def matrices(self) -> dict[str, torch.Tensor]:
        """Every weight matrix as (run, fan_in, fan_out) (the model says which: models/protocol.py)."""
        return self.model.matrices(self.params)

    def neuron_weights(self, params: Params | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """First hidden layer: incoming (run, N, fan_in) and outgoing (run, N, fan_out) weights per neuron."""
        return self.model.neuron_weights(params or self.params)

    # -- the full operation table (modular tasks) ----------------------------------------------------

    @cached_property
    def table_pairs(self) -> torch.Tensor:
        """Every pair (a, b) of the task, (n, 2), in the order train_index/test_index refer to."""
        task = self.config.task
        pairs, _ = modular_table(task)  # type: ignore[arg-type]
        return torch.from_numpy(pairs).to(self.device)

    @cached_property
    def table_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(train rows, test rows) of each run in the table, (run, n_train) and (run, n_test)."""
        train = torch.stack([torch.as_tensor(d.info["train_index"]) for d in self.data]).to(self.device)
        test = torch.stack([torch.as_tensor(d.info["test_index"]) for d in self.data]).to(self.device)
        return train, test

    @cached_property
    def table_logits(self) -> torch.Tensor:
        """Logits on every pair of the table: (run, n_pairs, C).

        The train and test sets of a modular task partition its table, so the evaluation's logits
        are scattered into place when they are at hand; otherwise the table is run through the model.
        """
        if self.eval_logits:
            train_logits, test_logits = self.eval_logits
            train_rows, test_rows = self.table_rows
            table = train_logits.new_empty(self.runs, len(self.table_pairs), train_logits.shape[-1])
            table.scatter_(1, train_rows[:, :, None].expand_as(train_logits), train_logits)
            table.scatter_(1, test_rows[:, :, None].expand_as(test_logits), test_logits)
            return table
        return self.forward(self.model.prepare(self.table_pairs.expand(self.runs, -1, -1)))

    @cached_property
    def table_neurons(self) -> torch.Tensor:
        """First-hidden-layer pre-activations on every pair of the table: (run, n_pairs, N)."""
        return self.neuron_preactivations(self.table_pairs.expand(self.runs, -1, -1))

    def neuron_preactivations(self, pairs: torch.Tensor) -> torch.Tensor:
        """First-hidden-layer pre-activations (the model's neuron_hook) for pairs (run, n, 2) -> (run, n, N)."""
        return self.activation(self.model.neuron_hook, self.model.prepare(pairs))

    def representations(self, x: torch.Tensor) -> torch.Tensor:
        """The representation the readout sees, for inputs x (run, n, ...) as the model consumes them:
        the MLP's last hidden layer, the transformer's residual stream at "=" -> (run, n, d)."""
        return self.activation(self.model.readout_input, x)

    def operand_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """How the network first represents operands a and b: (run, p, d) each (see Model.operand_embeddings)."""
        return self.model.operand_embeddings(self.params)
