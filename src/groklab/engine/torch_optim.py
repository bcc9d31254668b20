"""Any torch.optim.Optimizer over a stack (optimizer.name torch): one instance per run, on that run's slice.

Each run of a stack gets its own instance of the class, built on views of its slice of every stacked parameter
(`p.detach()[run]`: leaves that share the stack's storage, so the optimizer's in-place step updates the stack), with
the run's lr and weight_decay (when the class takes them) and `optimizer.kwargs`. So run i steps exactly as the same
optimizer does on run i alone (tests/unit/test_torch_optim.py), any setting may differ per run, and any optimizer
works, elementwise or not (one that mixes a matrix's entries, as Muon does, sees the run's matrix alone).

What groklab adds around torch.optim comes as for the built-in optimizers (engine/optim.py): Grokfast and ⊥Grad
filter the gradients before the step; warmup, param_groups, lazy training's lr scaling and the on_memorized /
on_generalized switches set each instance's group lr and weight_decay (eps too, where the class has it) before
the step; a checkpoint keeps each instance's state_dict.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from groklab.config import OptimizerConfig, SpecError
from groklab.engine.gradients import Step
from groklab.engine.optim import StackOptimizer
from groklab.factories import as_path, resolve
from groklab.plugins import described


def optimizer_class(config: OptimizerConfig) -> type[torch.optim.Optimizer]:
    """The class optimizer.class names ('torch.optim.NAdam' or 'package.module:Class'); SpecError if it is not a
    torch.optim.Optimizer."""
    found = resolve(as_path(config.optimizer_class or ""), "optimizer.class")
    if not (inspect.isclass(found) and issubclass(found, torch.optim.Optimizer)):
        raise SpecError(f"optimizer.class: {config.optimizer_class} is not a torch.optim.Optimizer subclass")
    return found


def check_torch_optimizer(config: OptimizerConfig) -> None:
    """SpecError, one line, for a class that cannot be built with the spec's settings (unknown kwargs, say)."""
    cls = optimizer_class(config)
    try:
        cls([{"params": [torch.zeros(2, 2, requires_grad=True)], **_settings(cls, config.lr, config.weight_decay)}],
            **config.kwargs)  # fmt: skip
    except Exception as error:  # the class's own message says what it refused
        raise SpecError(f"optimizer.kwargs: {config.optimizer_class} refuses them ({described(error)})") from None


def _settings(cls: type[torch.optim.Optimizer], lr: float, weight_decay: float) -> dict[str, float]:
    """lr, and weight_decay where the class takes it (an optimizer without one gets none)."""
    takes = inspect.signature(cls).parameters
    return {"lr": lr} | ({"weight_decay": weight_decay} if "weight_decay" in takes else {})


class TorchOptimizer(StackOptimizer):
    """A torch.optim class over a stack: one instance per run (see the module docstring)."""

    takes_device_step = False  # each run's torch.optim instance keeps its state and step count on the host

    def __init__(
        self,
        configs: list[OptimizerConfig],
        params: dict[str, torch.Tensor],
        hyper: dict[str, torch.Tensor],
        grokfast_window: int = 100,
    ) -> None:
        super().__init__("torch", params, hyper, grokfast_window)
        self.cls = optimizer_class(configs[0])
        self.kwargs = [dict(c.kwargs) for c in configs]
        self.instances: list[torch.optim.Optimizer] = []
        self.bound: dict[str, torch.Tensor] = {}  # the stacked tensors the instances' views belong to
        self.saved: list[list[dict[str, Any]]] = []
        """Each run's per-parameter optimizer state to continue from, once its instance is built."""
        self.switched: set[str] = set()
        """Hyperparameters an on_memorized / on_generalized switch set: eps reaches an instance only then."""

    def _set_hyper(self, hyper: dict[str, torch.Tensor]) -> None:
        super()._set_hyper(hyper)
        # The instances take Python floats: read the columns here, once per change (a switch, a select, a resume),
        # not every step (on a GPU each read waits for the device).
        self.host = {name: column.tolist() for name, column in hyper.items()}

    def _host_column(self, name: str, key: str) -> list[float]:
        """column(name, key) as host floats."""
        return self.host.get(f"{name}.{key}", self.host[key])

    def state_dict(self) -> dict[str, Any]:
        """The built-in state (filters, hyperparameters) and each run's per-parameter optimizer state."""
        return super().state_dict() | {"torch": self._states(), "switched": sorted(self.switched)}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        super().load_state_dict(saved)
        self.saved, self.instances, self.bound = list(saved["torch"]), [], {}
        self.switched = set(saved["switched"])

    def _states(self) -> list[list[dict[str, Any]]]:
        """Each run's optimizer state, parameter by parameter in group order: the tensors themselves, not
        Optimizer.state_dict's (whose load casts them to the parameter's dtype: NAdam's float32 mu_product would
        come back float64, and a resumed run would round differently)."""
        if not self.instances:
            return list(self.saved)
        return [[dict(o.state[p]) for g in o.param_groups for p in g["params"]] for o in self.instances]

    def select(self, keep: torch.Tensor) -> None:
        states, kept = self._states(), keep.tolist()
        self.saved = [state for state, k in zip(states, kept) if k] if states else []
        self.kwargs = [kwargs for kwargs, k in zip(self.kwargs, kept) if k]
        self.instances, self.bound = [], {}
        super().select(keep)

    def _update(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], step: Step) -> None:
        """The gradient filters, then each run's own step with its group's lr and weight decay for this step."""
        assert isinstance(step, int), "torch.optim instances keep host state: their stacks' steps are not captured"
        grads = self._filtered(params, grads, step)
        self._bind(params)
        groups, warmup = self._groups(list(params)), self.host["warmup_steps"]
        for run, optimizer in enumerate(self.instances):
            factor = min(1.0, step / warmup[run]) if warmup[run] > 0 else 1.0  # lr * min(1, step / warmup)
            for group, names in zip(optimizer.param_groups, groups.values()):
                group["lr"] = self._host_column(names[0], "lr")[run] * factor
                if "weight_decay" in group:
                    group["weight_decay"] = self._host_column(names[0], "weight_decay")[run]
                if "eps" in group and "eps" in self.switched:
                    group["eps"] = self.host["eps"][run]
                for p, name in zip(group["params"], names):
                    p.grad = grads[name][run]
            optimizer.step()

    def _groups(self, names: list[str]) -> dict[str, list[str]]:
        """Parameter groups: "" for the parameters optimizer.param_groups does not name, one for each it names."""
        groups: dict[str, list[str]] = {}
        for name in names:
            groups.setdefault(name if f"{name}.lr" in self.hyper else "", []).append(name)
        return groups

    def _bind(self, params: dict[str, torch.Tensor]) -> None:
        """Build each run's instance on views of the current stacked tensors (again after a select or a resume,
        which make new ones), carrying its state over."""
        if self.instances and all(self.bound.get(n) is p for n, p in params.items()):
            return
        states = self._states()
        groups = self._groups(list(params))
        self.instances = []
        for run in range(len(self.kwargs)):
            settings = [
                {"params": [params[n].detach()[run] for n in names],
                 **_settings(self.cls, self._host_column(names[0], "lr")[run],
                             self._host_column(names[0], "weight_decay")[run])}
                for names in groups.values()
            ]  # fmt: skip
            optimizer = self.cls(settings, **self.kwargs[run])
            if states:  # the same state objects, on the new views
                for p, state in zip((p for g in optimizer.param_groups for p in g["params"]), states[run]):
                    optimizer.state[p] = dict(state)
            self.instances.append(optimizer)
        self.bound, self.saved = dict(params), []

    def switch(self, run: int, values: dict[str, float]) -> None:
        self.switched |= set(values)
        super().switch(run, values)
