"""A stack: K runs that share shapes, trained as one batched model with a leading run axis.

Each run keeps its own data, init, hyperparameters, batch order and dropout masks, so run i of a stack
equals run i trained alone (tests/unit/test_engine.py). Finished runs are cut out (`select`); what a run has of
its own lives in one container (PerRun), and what training changes is the stack's state_dict (checkpoints).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from groklab.config import ModularTask, OptimizerConfig, PermutationTask, RunConfig
from groklab.data import make_data
from groklab.data.dataset import RunData
from groklab.engine.gradients import Step
from groklab.engine.muon import MuonOptimizer, muon_layout
from groklab.engine.optim import StackOptimizer, hyperparameters
from groklab.engine.torch_optim import TorchOptimizer
from groklab.losses import per_run_loss, weighted_mean
from groklab.measures import Probe
from groklab.models import build_model, stack_params
from groklab.models.protocol import FitsInClosedForm
from groklab.seeds import derive_seed, rng_for


@dataclass
class PerRun:
    """What a stack holds of each of its runs besides parameters and optimizer state: run i is item i of every list
    and row i of every tensor (the run axis comes first). `select` keeps some runs in every field at once, so a new
    per-run field is one line here (and, when training changes it, one in Stack.state_dict)."""

    ids: list[str]
    configs: list[RunConfig]
    data: list[RunData]
    x_train: torch.Tensor
    """(run, n_train, ...) inputs as the model consumes them (e.g. token sequences), prepared once."""
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    init_params: dict[str, torch.Tensor]
    """The parameters at step 0 (init_distance measures the way from them)."""
    buffers: dict[str, torch.Tensor]
    """What the model has besides parameters: BatchNorm statistics, label templates, output_scale."""
    batch_generators: list[torch.Generator]
    """Each run's batch order (drawn on the host, so every device sees the same batches)."""
    train_generators: list[torch.Generator] | None
    """Each run's dropout masks, on the device (None: the model trains as it evaluates)."""
    order: torch.Tensor | None = None
    """(run, n_train) this epoch's permutation of each run's training set."""
    kept: torch.Tensor | None = None
    """(run, n_train) 0/1 once some run's training set shrank (task.on_generalized): the others keep all."""
    shrunk_at: list[int | None] = field(default_factory=list)
    """The step at which each run's training set shrank, if it did."""

    def select(self, keep: list[bool]) -> None:
        """Keep the runs where `keep` is True, in every field."""
        mask = torch.tensor(keep, device=self.x_train.device)
        for name in (f.name for f in fields(self)):
            setattr(self, name, _rows(getattr(self, name), keep, mask))


def _rows(value: Any, keep: list[bool], mask: torch.Tensor) -> Any:
    """The kept runs of one per-run field: items of a list, rows of a tensor, rows of each tensor of a dict."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value[mask]
    if isinstance(value, dict):
        return {name: tensor[mask] for name, tensor in value.items()}
    return [item for item, k in zip(value, keep) if k]


class Stack:
    """K runs that share shapes (task, model, batch size, loss, dtype) as one batched model."""

    def __init__(self, runs: list[tuple[str, RunConfig]], device: str | torch.device = "cpu") -> None:
        configs = [config for _, config in runs]
        first = configs[0]
        self.device = device = torch.device(device)
        self.dtype = torch.float64 if first.train.dtype == "float64" else torch.float32
        data = [make_data(c.task, c.seed) for c in configs]
        self.model = build_model(first.model, data[0])
        self.fits_in_closed_form = isinstance(self.model, FitsInClosedForm)  # a kernel machine: no gradient steps

        def stacked(name: str) -> torch.Tensor:
            tensor = torch.stack([getattr(d, name) for d in data]).to(device)
            return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

        # Each run inits from its own model config: init_scale is a per-run quantity.
        per_run = [build_model(c.model, d).init(c.seed, self.dtype) for c, d in zip(configs, data)]
        per_run = [{n: p.to(device) for n, p in params.items()} for params in per_run]
        self.params = {n: p.requires_grad_() for n, p in self.model.layout(stack_params(per_run)).items()}
        # A training pass differs from evaluation with dropout (each run draws its masks from its own
        # generator, so stacked == alone holds) and BatchNorm (batch statistics, running ones updated).
        buffers = self.model.buffers([c.seed for c in configs], device, self.dtype)
        if any(_output_scale(c) != 1.0 for c in configs):
            scales = [_output_scale(c) for c in configs]
            buffers["output_scale"] = torch.tensor(scales, device=device, dtype=self.dtype)
        self.runs = PerRun(
            ids=[run_id for run_id, _ in runs],
            configs=configs,
            data=data,
            x_train=self.model.prepare(stacked("x_train")),
            y_train=stacked("y_train"),
            x_test=self.model.prepare(stacked("x_test")),
            y_test=stacked("y_test"),
            init_params={n: p.detach().clone() for n, p in self.params.items()},
            buffers=buffers,
            batch_generators=[torch.Generator().manual_seed(derive_seed(c.seed, "batches")) for c in configs],
            # Dropout masks are drawn on the device itself (a CUDA generator per run: Philox, seed and offset).
            train_generators=[torch.Generator(device).manual_seed(derive_seed(c.seed, "dropout")) for c in configs]
            if self.model.trains_differently
            else None,
            shrunk_at=[None] * len(runs),
        )
        # model.output_scale alpha divides the learning rates by alpha^2 (lazy training's convention).
        scaled = [_scaled_optimizer(c) for c in configs]
        hyper = hyperparameters(scaled, device, self.dtype)
        window = first.optimizer.grokfast.window
        if first.optimizer.name == "torch":  # a torch.optim class: one instance per run
            self.optimizer: StackOptimizer = TorchOptimizer(scaled, self.params, hyper, window)
        elif first.optimizer.name == "muon":  # Muon for the hidden matrices, AdamW for the rest
            self.optimizer = MuonOptimizer(scaled, self.params, hyper, self._muon_layout(), window)
        else:
            self.optimizer = StackOptimizer(first.optimizer.name, self.params, hyper, window)
        n_train = self.runs.x_train.shape[1]
        batch_size = first.train.batch_size
        self.batch_size = n_train if batch_size is None or batch_size >= n_train else batch_size
        self.draws = first.train.batch_order == "draws"
        self.cursor = n_train  # the position in this epoch's permutation
        self.loss_kind = first.loss_kind
        self.loss_dtype = torch.float64 if first.train.loss_dtype == "float64" else self.dtype
        self.regression = self.loss_kind == "regression"
        self.eval_logits: list[torch.Tensor] = []  # (train, test) logits of the last evaluation, until the next step
        # What a measure derives from a run's init and data alone (the NTK at init), computed once per run: see Probe.
        self.at_init: dict[tuple[str, str], torch.Tensor] = {}
        self.captured: Callable[[int, bool], None] | None = None
        """The step as a replayed CUDA graph (engine/captured.py; train_stack sets it on a GPU); None: eager steps."""

    def _muon_layout(self) -> dict[str, torch.Tensor]:
        """Where each matrix Muon trains sits in its parameter: Model.matrices of index tensors, the embeddings and
        the readout left out (engine/muon.py)."""
        indices = {
            n: torch.arange(p[0].numel(), device=p.device).view(p.shape[1:])[None] for n, p in self.params.items()
        }
        return muon_layout(self.model.matrices(indices), {*self.model.embeddings, *self.model.readout})

    def state_dict(self) -> dict[str, Any]:
        """What training changes (torch's Stateful): a stack built afresh from the same runs continues from it
        exactly — parameters, BatchNorm statistics, optimizer moments and (switched) hyperparameters, every per-run
        generator, the epoch's permutation and where it stands, the shrunk training sets."""
        runs = self.runs
        return {
            "ids": list(runs.ids),
            "params": {n: p.detach().clone() for n, p in self.params.items()},
            "buffers": dict(runs.buffers),
            "optimizer": self.optimizer.state_dict(),
            "batch_generators": [g.get_state() for g in runs.batch_generators],
            "train_generators": [g.get_state() for g in runs.train_generators or []],
            "order": runs.order,
            "cursor": self.cursor,
            "kept": runs.kept,
            "shrunk_at": list(runs.shrunk_at),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state_dict of the same runs."""
        runs = self.runs
        if state["ids"] != runs.ids:
            raise ValueError(f"checkpoint of runs {state['ids']} does not fit the stack {runs.ids}")
        self.params = {n: p.requires_grad_() for n, p in self.model.layout(state["params"]).items()}
        runs.buffers = state["buffers"]
        self.optimizer.load_state_dict(state["optimizer"])
        for generator, saved in zip(runs.batch_generators, state["batch_generators"]):
            generator.set_state(saved)
        for generator, saved in zip(runs.train_generators or [], state["train_generators"]):
            generator.set_state(saved)
        runs.order, runs.kept, runs.shrunk_at = state["order"], state["kept"], state["shrunk_at"]
        self.cursor = state["cursor"]

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (x, y) of every run: the whole train set, or the next slice of each run's shuffle."""
        return self.gather(self.batch_index())

    def gather(self, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of every run at `index` (run, batch) into its training set; None: the whole training set."""
        runs = self.runs
        if index is None:
            return runs.x_train, runs.y_train
        rows = torch.arange(index.shape[0], device=self.device)[:, None]
        return runs.x_train[rows, index], runs.y_train[rows, index]

    def batch_index(self) -> torch.Tensor | None:
        """(run, batch) positions of the next batch in each run's training set (None: full batch): the next slice
        of each run's shuffle, drawn on the host from its own generator."""
        runs = self.runs
        n_train = runs.x_train.shape[1]
        if self.batch_size == n_train:
            return None
        if self.draws:  # a fresh draw every step: the first batch_size of a new permutation
            self.cursor = n_train
        if self.cursor >= n_train:  # new epoch: each run reshuffles with its own generator
            orders = [torch.randperm(n_train, generator=g) for g in runs.batch_generators]
            runs.order = torch.stack(orders).to(self.device)
            self.cursor = 0
        assert runs.order is not None
        index = runs.order[:, self.cursor : self.cursor + self.batch_size]  # (run, batch)
        self.cursor += self.batch_size
        return index

    def train_step(self, step: int, measure_update: bool = False) -> None:
        """One optimizer update of every run in the stack (no host synchronization); `measure_update` keeps the
        size of each run's update in optimizer.update_norm. A captured step replays its graph, except the step that
        measures its update, which runs eagerly with the same arithmetic (the same device step)."""
        self.eval_logits = []  # stale after this step
        if self.captured is not None:
            return self.captured(step, measure_update)
        x, y = self.batch()
        if self.fits_in_closed_form:
            return self._fit(x, y, step, measure_update)
        self.descend(x, y, step, measure_update)

    def descend(self, x: torch.Tensor, y: torch.Tensor, step: Step, measure_update: bool = False) -> None:
        """One gradient step of every run on its batch (x, y): forward, loss, backward, the optimizer's update."""
        logits = self.forward(x, train=True)
        loss = per_run_loss(logits.to(self.loss_dtype), y, self.loss_kind, self.runs.kept).sum()
        # Summing the runs' losses gives each run exactly its own gradient: runs share no parameters.
        grads = torch.autograd.grad(loss, list(self.params.values()))
        self.optimizer.step(self.params, dict(zip(self.params, grads)), step, measure_update)

    def _fit(self, x: torch.Tensor, y: torch.Tensor, step: int, measure_update: bool) -> None:
        """A step of a model that fits in closed form (a kernel machine): its own update, no gradient; the size of
        the update goes where update_norm reads it, as an optimizer's would."""
        assert isinstance(self.model, FitsInClosedForm)
        before = {n: p.detach().clone() for n, p in self.params.items()} if measure_update else None
        self.model.fit(self.params, x, y, step)
        if before is not None:
            squares = [(p.detach() - before[n]).square().flatten(1).sum(dim=1) for n, p in self.params.items()]
            self.optimizer.update_norm = torch.sqrt(functools.reduce(operator.add, squares))

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """Logits of every run; a training pass draws dropout masks and updates the BatchNorm statistics."""
        generators = self.runs.train_generators if train else None
        return self.model.forward(self.params, x, buffers=self.runs.buffers, generators=generators)

    @torch.no_grad()
    def evaluate(self) -> torch.Tensor:
        """(metric, run) tensor of METRICS on the full train and test sets.

        The logits stay in `self.eval_logits` (train, test) until the next step: measures reuse them.
        """
        runs, rows, self.eval_logits = self.runs, [], []
        for x, y, kept in ((runs.x_train, runs.y_train, runs.kept), (runs.x_test, runs.y_test, None)):
            logits = self.forward(x)
            self.eval_logits.append(logits)
            rows.append(per_run_loss(logits.to(self.loss_dtype), y, self.loss_kind, kept).to(self.dtype))
            if self.regression:  # the "accuracy" of a regression is R^2 = 1 - MSE / Var(y)
                rows.append(1 - rows[-1] / y.var(dim=1, unbiased=False))
                continue
            hits = (logits.argmax(dim=-1) == y).to(self.dtype)
            rows.append(hits.mean(dim=1) if kept is None else weighted_mean(hits, kept.to(self.dtype)))
        squares = [p.square().flatten(1).sum(dim=1) for p in self.params.values()]
        rows.append(torch.sqrt(functools.reduce(operator.add, squares)))
        return torch.stack(rows)

    def select(self, keep: list[bool]) -> None:
        """Cut finished runs out of the stack."""
        mask = torch.tensor(keep, device=self.device)
        kept = self.model.layout({n: p.detach()[mask] for n, p in self.params.items()})
        self.params = {n: p.requires_grad_() for n, p in kept.items()}
        self.optimizer.select(mask)
        self.runs.select(keep)
        self.eval_logits = [logits[mask] for logits in self.eval_logits]

    def shrink(self, run: int, step: int) -> None:
        """From this step on, train one run on a random subset of its training examples (task.on_generalized):
        round(F x the eligible pairs) of them, drawn from the run's seed (Varma et al. 2023's ungrokking)."""
        runs = self.runs
        task, data = runs.configs[run].task, runs.data[run]
        assert isinstance(task, ModularTask | PermutationTask) and task.kept_fraction is not None  # config checks
        n_train = runs.x_train.shape[1]
        held_out = int(torch.isin(data.y_test, torch.tensor(task.holdout_labels, dtype=torch.long)).sum())
        eligible = n_train + len(data.y_test) - held_out
        n_kept = max(1, round(task.kept_fraction * eligible))
        if runs.kept is None:
            runs.kept = torch.ones(len(runs.ids), n_train, dtype=torch.bool, device=self.device)
        rng = rng_for(runs.configs[run].seed, "shrink")
        chosen = torch.from_numpy(rng.choice(n_train, size=n_kept, replace=False))
        runs.kept[run] = False
        runs.kept[run, chosen.to(self.device)] = True
        runs.shrunk_at[run] = step

    def probe(self, step: int, run: int | None = None) -> Probe:
        """What the measures read at this step: the whole stack, or one run of it (a stack of one)."""
        runs = self.runs
        index = slice(None) if run is None else slice(run, run + 1)
        tensors = {"x_train": runs.x_train, "y_train": runs.y_train, "x_test": runs.x_test, "y_test": runs.y_test}
        if runs.kept is not None:  # a training set that shrank: measures read the examples it keeps
            tensors["train_kept"] = runs.kept
        return Probe(
            step=step,
            ids=runs.ids[index],
            params={n: p[index] for n, p in self.params.items()},
            model=self.model,
            configs=runs.configs[index],
            data=runs.data[index],
            init_params={n: p[index] for n, p in runs.init_params.items()},
            stacked={n: t[index] for n, t in tensors.items()},
            eval_logits=[logits[index] for logits in self.eval_logits],
            buffers={n: b[index] for n, b in runs.buffers.items()},
            update_norm=None if self.optimizer.update_norm is None else self.optimizer.update_norm[index],
            at_init=self.at_init,
        )


def _scaled_optimizer(config: RunConfig) -> OptimizerConfig:
    """The run's optimizer with optimizer.lr and every param_groups lr divided by model.output_scale^2."""
    square, optimizer = _output_scale(config) ** 2, config.optimizer
    groups = {name: {k: v / square if k == "lr" else v for k, v in group.items()} for name, group in
              optimizer.param_groups.items()}  # fmt: skip
    return optimizer.model_copy(update={"lr": optimizer.lr / square, "param_groups": groups})


def _output_scale(config: RunConfig) -> float:
    """model.output_scale of an MLP (1 for models without it)."""
    return float(getattr(config.model, "output_scale", 1.0))
