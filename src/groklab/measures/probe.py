"""What a measure reads: a stack's parameters, model and data, and tensors derived from them once.

Every tensor carries the run axis first. The model-specific questions (where are the hidden neurons,
which weights are the last layer, what are the operands' embeddings) are answered here, so that each
measure is written once for the MLP and the transformer alike.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch

from groklab.config import MeasuresConfig, ModularTask, ParityTask, RunConfig
from groklab.data import operation_table
from groklab.data.dataset import RunData
from groklab.models.mlp import MLP
from groklab.models.transformer import Transformer


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
    return config.task.label_noise > 0


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


class Probe:
    """One evaluation of one stack: step, parameters (detached) and cached derived tensors."""

    def __init__(
        self,
        step: int,
        params: dict[str, torch.Tensor],
        model: MLP | Transformer,
        configs: list[RunConfig],
        data: list[RunData],
        init_params: dict[str, torch.Tensor],
        stacked: dict[str, torch.Tensor],
        eval_logits: list[torch.Tensor] | None = None,
        buffers: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.step = step
        self.params = {name: p.detach() for name, p in params.items()}
        self.model = model
        self.configs = configs
        self.config = configs[0]
        self.options: MeasuresConfig = configs[0].measures
        self.data = data
        self.init_params = init_params
        self.stacked = stacked
        """The stack's tensors: x_train, y_train, x_test, y_test (as the model consumes them)."""
        self.eval_logits = eval_logits or []
        """(train, test) logits of this step's evaluation, if it just ran (reused, not recomputed)."""
        self.buffers = buffers or {}
        """The model's running statistics (BatchNorm), if it has any."""
        self.device = next(iter(params.values())).device

    def forward(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None, **kwargs: Any) -> torch.Tensor:
        """Evaluation-mode logits (run, n, C) of inputs x as the model consumes them (default: own params)."""
        if self.buffers:
            kwargs["buffers"] = self.buffers
        with torch.no_grad():
            return self.model.forward(self.params if params is None else params, x, **kwargs)

    @cached_property
    def train_logits(self) -> torch.Tensor:
        """Evaluation-mode logits on the training set (run, n_train, C): this step's evaluation's, if it ran."""
        return self.eval_logits[0] if self.eval_logits else self.forward(self.stacked["x_train"])

    @property
    def runs(self) -> int:
        return next(iter(self.params.values())).shape[0]

    # -- weights -----------------------------------------------------------------------------------

    def matrices(self) -> dict[str, torch.Tensor]:
        """Every weight matrix as (run, fan_in, fan_out); attention weights with their heads side by side."""
        out = {}
        for name, p in self.params.items():
            leaf = name.rsplit(".", 1)[-1]
            if not leaf.startswith("W_"):
                continue
            if leaf in ("W_Q", "W_K", "W_V"):  # (run, head, d_model, d_head) -> (run, d_model, head * d_head)
                p = p.permute(0, 2, 1, 3).flatten(2)
            elif leaf == "W_O":  # (run, head, d_head, d_model) -> (run, head * d_head, d_model)
                p = p.flatten(1, 2)
            out[name] = p
        return out

    def last_layer(self) -> list[str]:
        """Names of the readout's parameters (the slingshot's last layer)."""
        names = ("W_out", "b_out") if isinstance(self.model, MLP) else ("W_U", "b_U")
        return [n for n in names if n in self.params]

    def neuron_weights(self, params: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """First hidden layer: incoming (run, N, fan_in) and outgoing (run, N, fan_out) weights per neuron."""
        params = params or self.params
        if isinstance(self.model, MLP):
            after = "W_out" if self.model.config.depth == 1 else "W_h1"
            return params["W_in"].transpose(1, 2), params[after]
        return params["blocks.0.mlp.W_in"].transpose(1, 2), params["blocks.0.mlp.W_out"]

    def neuron_output_name(self) -> str:
        """The parameter whose rows are the first hidden layer's outgoing weights (zeroed to prune)."""
        if isinstance(self.model, MLP):
            return "W_out" if self.model.config.depth == 1 else "W_h1"
        return "blocks.0.mlp.W_out"

    # -- the full operation table (modular tasks) ----------------------------------------------------

    @cached_property
    def table_pairs(self) -> torch.Tensor:
        """Every pair (a, b) of the task, (n, 2), in the order train_index/test_index refer to."""
        task = self.config.task
        pairs, _ = operation_table(task.operation, task.modulus)  # type: ignore[union-attr]
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
        """Pre-activations of the first hidden layer for inputs (run, n, ...) -> (run, n, N)."""
        with torch.no_grad():
            if isinstance(self.model, MLP):
                return self.model.input_layer(self.params, self.model.prepare(pairs))
            captured: dict[str, torch.Tensor] = {}
            hooks = {"blocks.0.mlp.hook_pre": lambda t: captured.setdefault("pre", t)}
            self.forward(self.model.prepare(pairs), hooks=hooks)
            return captured["pre"][:, :, -1]  # at "=" (a 1-layer model computes its MLP there only)

    def representations(self, x: torch.Tensor) -> torch.Tensor:
        """The representation the readout sees, for inputs x (run, n, ...) as the model consumes them:
        the MLP's last hidden layer, the transformer's residual stream at "=" -> (run, n, d)."""
        with torch.no_grad():
            if isinstance(self.model, MLP):
                return self.model.hidden(self.params, x, buffers=self.buffers)
            captured: dict[str, Any] = {}
            last = f"blocks.{self.model.config.n_layers - 1}.hook_resid_post"
            name = "ln_final.hook_normalized" if self.model.config.layernorm == "pre" else last
            self.forward(x, hooks={name: lambda t: captured.setdefault("h", t)})
            return captured["h"][:, :, -1]

    def operand_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """How the network first represents operands a and b: (run, p, d) each.

        One-hot MLP: the blocks of W_in that a and b select (the first layer's pre-activation is
        W_in[a] + W_in[p + b]); learned-embedding MLP and transformer: the token embedding W_E.
        """
        if isinstance(self.model, MLP) and self.model.config.embedding == "one_hot":
            V, p = self.model.vocab, self.model.operands  # one-hot blocks of V rows, one per token position
            W_in = self.params["W_in"]
            b_block = 2 if self.model.sequence else 1  # "a op b =": b is the third token
            return W_in[:, :p], W_in[:, b_block * V : b_block * V + p]
        p = self.config.task.n_labels  # type: ignore[union-attr]
        W_E = self.params["W_E"][:, :p]
        return W_E, W_E
