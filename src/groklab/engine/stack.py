"""A stack: K runs that share shapes, trained as one batched model with a leading run axis.

Each run keeps its own data, init, hyperparameters, batch order and dropout masks, so run i of a stack
equals run i trained alone (tests/unit/test_engine.py). Finished runs are cut out (`select`).
"""

from __future__ import annotations

import functools
import operator

import torch

from groklab.config import ModularTask, OptimizerConfig, PermutationTask, RunConfig
from groklab.data import make_data
from groklab.data.dataset import RunData
from groklab.engine.optim import StackOptimizer, hyperparameters
from groklab.losses import per_run_loss, weighted_mean
from groklab.measures import Probe
from groklab.models import build_model, stack_params
from groklab.seeds import derive_seed, rng_for


class Stack:
    """K runs that share shapes (task, model, batch size, loss, dtype) as one batched model."""

    def __init__(self, runs: list[tuple[str, RunConfig]], device: str | torch.device = "cpu") -> None:
        self.ids = [run_id for run_id, _ in runs]
        self.configs = [config for _, config in runs]
        first = self.configs[0]
        self.device = device = torch.device(device)
        self.dtype = torch.float64 if first.train.dtype == "float64" else torch.float32
        self.data: list[RunData] = [make_data(c.task, c.seed) for c in self.configs]
        self.model = build_model(first.model, self.data[0])

        def stacked(name: str) -> torch.Tensor:
            tensor = torch.stack([getattr(d, name) for d in self.data]).to(device)
            return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

        # Inputs are prepared once (e.g. token sequences for a transformer), never inside the step.
        self.x_train, self.y_train = self.model.prepare(stacked("x_train")), stacked("y_train")  # (run, n, ...)
        self.x_test, self.y_test = self.model.prepare(stacked("x_test")), stacked("y_test")
        # Each run inits from its own model config: init_scale is a per-run quantity.
        per_run = [build_model(c.model, d).init(c.seed, self.dtype) for c, d in zip(self.configs, self.data)]
        per_run = [{n: p.to(device) for n, p in params.items()} for params in per_run]
        self.params = {n: p.requires_grad_() for n, p in self.model.layout(stack_params(per_run)).items()}
        self.init_params = {n: p.detach().clone() for n, p in self.params.items()}  # for init_distance
        # model.output_scale alpha divides the learning rates by alpha^2 (lazy training's convention).
        hyper = hyperparameters([_scaled_optimizer(c) for c in self.configs], device, self.dtype)
        self.optimizer = StackOptimizer(first.optimizer.name, self.params, hyper, first.optimizer.grokfast.window)
        n_train = self.x_train.shape[1]
        batch_size = first.train.batch_size
        self.batch_size = n_train if batch_size is None or batch_size >= n_train else batch_size
        self.draws = first.train.batch_order == "draws"
        self.batch_generators = [torch.Generator().manual_seed(derive_seed(c.seed, "batches")) for c in self.configs]
        self.order: torch.Tensor | None = None  # (run, n_train) this epoch's permutation
        self.cursor = n_train
        self.loss_dtype = torch.float64 if first.train.loss_dtype == "float64" else self.dtype
        self.eval_logits: list[torch.Tensor] = []  # (train, test) logits of the last evaluation
        # What a measure derives from a run's init and data alone (the NTK at init), computed once per run: see Probe.
        self.at_init: dict[tuple[str, str], torch.Tensor] = {}
        # A training set that shrinks (task.on_generalized) keeps its examples and weighs the dropped ones 0, so the
        # runs of a stack keep one shape: (run, n_train) 0/1, None until some run shrinks.
        self.kept: torch.Tensor | None = None
        self.shrunk_at: list[int | None] = [None] * len(self.ids)
        # A training pass differs from evaluation with dropout (each run draws its masks from its own
        # generator, so stacked == alone holds) and BatchNorm (batch statistics, running ones updated).
        self.buffers = self.model.buffers([c.seed for c in self.configs], device, self.dtype)
        if any(_output_scale(c) != 1.0 for c in self.configs):
            scales = [_output_scale(c) for c in self.configs]
            self.buffers["output_scale"] = torch.tensor(scales, device=device, dtype=self.dtype)
        self.regression = first.loss_kind == "regression"
        # Dropout masks are drawn on the device itself (a CUDA generator per run: Philox, seed and offset), batch
        # orders on the host once per epoch (the same batches on every device).
        self.train_generators = (
            [torch.Generator(device).manual_seed(derive_seed(c.seed, "dropout")) for c in self.configs]
            if self.model.trains_differently
            else None
        )

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (x, y) of every run: the whole train set, or the next slice of each run's shuffle."""
        n_train = self.x_train.shape[1]
        if self.batch_size == n_train:
            return self.x_train, self.y_train
        if self.draws:  # a fresh draw every step: the first batch_size of a new permutation
            self.cursor = n_train
        if self.cursor >= n_train:  # new epoch: each run reshuffles with its own generator
            orders = [torch.randperm(n_train, generator=g) for g in self.batch_generators]
            self.order = torch.stack(orders).to(self.device)
            self.cursor = 0
        assert self.order is not None
        index = self.order[:, self.cursor : self.cursor + self.batch_size]  # (run, batch)
        self.cursor += self.batch_size
        rows = torch.arange(index.shape[0], device=self.device)[:, None]
        return self.x_train[rows, index], self.y_train[rows, index]

    def train_step(self, step: int, loss_kind: str) -> None:
        """One optimizer update of every run in the stack (no host synchronization)."""
        x, y = self.batch()
        self.eval_logits = []  # stale after this step
        logits = self.forward(x, train=True)
        loss = per_run_loss(logits.to(self.loss_dtype), y, loss_kind, self.kept).sum()
        # Summing the runs' losses gives each run exactly its own gradient: runs share no parameters.
        grads = torch.autograd.grad(loss, list(self.params.values()))
        self.optimizer.step(self.params, dict(zip(self.params, grads)), step)

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """Logits of every run; a training pass draws dropout masks and updates the BatchNorm statistics."""
        generators = self.train_generators if train else None
        return self.model.forward(self.params, x, buffers=self.buffers, generators=generators)

    @torch.no_grad()
    def evaluate(self, loss_kind: str) -> torch.Tensor:
        """(metric, run) tensor of METRICS on the full train and test sets.

        The logits stay in `self.eval_logits` (train, test) until the next step: measures reuse them.
        """
        rows, self.eval_logits = [], []
        for x, y, kept in ((self.x_train, self.y_train, self.kept), (self.x_test, self.y_test, None)):
            logits = self.forward(x)
            self.eval_logits.append(logits)
            rows.append(per_run_loss(logits.to(self.loss_dtype), y, loss_kind, kept).to(self.dtype))
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
        self.init_params = {n: p[mask] for n, p in self.init_params.items()}
        self.buffers = {n: b[mask] for n, b in self.buffers.items()}
        self.optimizer.select(mask)
        self.x_train, self.y_train = self.x_train[mask], self.y_train[mask]
        self.x_test, self.y_test = self.x_test[mask], self.y_test[mask]
        self.kept = self.kept[mask] if self.kept is not None else None
        self.eval_logits = [logits[mask] for logits in self.eval_logits]
        if self.order is not None:
            self.order = self.order[mask]
        for name in ("ids", "configs", "data", "batch_generators", "train_generators", "shrunk_at"):
            if getattr(self, name) is not None:
                setattr(self, name, [item for item, k in zip(getattr(self, name), keep) if k])

    def shrink(self, run: int, step: int) -> None:
        """From this step on, train one run on a random subset of its training examples (task.on_generalized):
        round(F x the eligible pairs) of them, drawn from the run's seed (Varma et al. 2023's ungrokking)."""
        task, data = self.configs[run].task, self.data[run]
        assert isinstance(task, ModularTask | PermutationTask) and task.kept_fraction is not None  # config checks
        n_train = self.x_train.shape[1]
        held_out = int(torch.isin(data.y_test, torch.tensor(task.holdout_labels, dtype=torch.long)).sum())
        eligible = n_train + len(data.y_test) - held_out
        n_kept = max(1, round(task.kept_fraction * eligible))
        if self.kept is None:
            self.kept = torch.ones(len(self.ids), n_train, dtype=torch.bool, device=self.device)
        rng = rng_for(self.configs[run].seed, "shrink")
        chosen = torch.from_numpy(rng.choice(n_train, size=n_kept, replace=False))
        self.kept[run] = False
        self.kept[run, chosen.to(self.device)] = True
        self.shrunk_at[run] = step

    def probe(self, step: int, run: int | None = None) -> Probe:
        """What the measures read at this step: the whole stack, or one run of it (a stack of one)."""
        index = slice(None) if run is None else slice(run, run + 1)
        tensors = {"x_train": self.x_train, "y_train": self.y_train, "x_test": self.x_test, "y_test": self.y_test}
        if self.kept is not None:  # a training set that shrank: measures read the examples it keeps
            tensors["train_kept"] = self.kept
        configs, data = (self.configs, self.data) if run is None else ([self.configs[run]], [self.data[run]])
        return Probe(
            step=step,
            ids=self.ids[index],
            params={n: p[index] for n, p in self.params.items()},
            model=self.model,
            configs=configs,
            data=data,
            init_params={n: p[index] for n, p in self.init_params.items()},
            stacked={n: t[index] for n, t in tensors.items()},
            eval_logits=[logits[index] for logits in self.eval_logits],
            buffers={n: b[index] for n, b in self.buffers.items()},
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
