"""Your own torch.nn.Module as a groklab model: K runs of it trained as one stack, through torch.func.

The factory builds one run's module, called with the run's init stream seeded (torch.manual_seed of the run's
"init" seed inside torch.random.fork_rng: inits differ per seed, repeat exactly, and leave the global stream as it
was). The stack keeps every parameter and buffer with a leading run axis, under the module's own names
("0.weight", "encoder.layers.0.self_attn.in_proj_weight"), and calls the module with them through
torch.func.functional_call, vmapped over the run axis: one batched call for the K runs.

Why run i of a stack equals run i alone:
- vmap computes each run's slice of every operation from that run's tensors only; BatchNorm's running statistics
  are per-run buffers, updated in place through vmap, so each run keeps its own.
- Dropout cannot go through vmap with one generator per run (randomness="different" draws every run's masks from
  the one global stream). A module that draws random numbers while training (found once, by trying a training
  pass under vmap(randomness="error")) trains one run at a time: the global stream is seeded from that run's own
  generator for its pass, so its masks depend on nothing else.
- PyTorch's fused attention fast path (nn.MultiheadAttention, nn.TransformerEncoderLayer at evaluation) is off
  while the module runs: it skips the submodules (no hook points there) and has no vmap rule (a slow fallback).

Hook points are the submodules' outputs, under their module paths (a tuple output's first tensor, as
MultiheadAttention's). Hooks see the whole stack's activation, (run, batch, ...), as with the built-in models:
the module runs vmapped with its activations at the hooked points returned as extra outputs, and runs again from
the first point whose hook changed its activation (one pass for hooks that only read, as run_with_cache's).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from functools import cached_property, partial
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from groklab.config import ModuleModel, RunConfig, SpecError
from groklab.data import make_data
from groklab.factories import resolve
from groklab.models.layers import Hooks, Params
from groklab.models.protocol import run_with_cache
from groklab.plugins import described
from groklab.seeds import derive_seed


def build_module(config: ModuleModel, seed: int) -> nn.Module:
    """Run `seed`'s module: the factory called with the run's init stream seeded, the global stream left as it was.
    SpecError (one line, naming model.factory) where the factory raises or returns something else."""
    factory = resolve(config.factory)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        try:
            module = factory(**config.kwargs)
        except Exception as error:  # the user's code: whatever it raises, said in one line
            raise SpecError(f"model.factory: {config.factory}(**model.kwargs) raised {described(error)}") from None
    if not isinstance(module, nn.Module):
        returned = type(module).__name__
        raise SpecError(f"model.factory: {config.factory} returned a {returned}; allowed: a torch.nn.Module")
    return module


def check_module(config: RunConfig) -> None:
    """SpecError, one line naming the key, for a user's module that cannot train on the run's task: a factory that
    does not import, raises or returns no Module; a model.* path that names no submodule; outputs that do not fit the
    task's classes; a module that cannot be stacked (run under torch.func.vmap), saying why."""
    model = config.model
    assert isinstance(model, ModuleModel)
    data = make_data(config.task, config.seed)
    stack = StackedModule(model, data.x_train[:2], data.n_classes, data.vocab)
    submodules = dict(stack.module.named_modules())
    for key in ("readout", "neurons", "neuron_output"):
        path = getattr(model, key)
        if path is not None and path not in submodules:
            raise SpecError(f"model.{key}: {path!r} is not a submodule of the module; allowed: {_shown(submodules)}")
    if model.embedding is not None and model.embedding not in submodules and model.embedding not in stack.shapes():
        raise SpecError(f"model.embedding: {model.embedding!r} is not a submodule or a parameter of the module")
    for key in ("neurons", "neuron_output"):
        path = getattr(model, key)
        if path is not None and not isinstance(submodules[path], nn.Linear):
            raise SpecError(f"model.{key}: {path} is a {type(submodules[path]).__name__}; allowed: an nn.Linear")
    dtype = torch.float64 if config.train.dtype == "float64" else torch.float32
    params = {n: p[None] for n, p in stack.init(config.seed, dtype).items()}
    buffers = stack.buffers([config.seed], torch.device("cpu"), dtype)
    x = stack.example[None]
    x = x.to(dtype) if x.is_floating_point() else x
    try:
        with torch.no_grad():
            out = stack.forward(params, x, buffers=buffers)
            stack.forward(params, x, buffers=buffers, generators=[torch.Generator().manual_seed(0)])
    except SpecError:
        raise
    except Exception as error:
        raise SpecError(
            f"model.factory: {model.factory}'s module cannot be stacked (run under torch.func.vmap with "
            f"functional_call): {described(error)}"
        ) from None
    wanted = (len(data.x_train[:2]), data.n_classes)
    if tuple(out.shape[1:]) != wanted:
        what = "a prediction per example" if config.regression else f"a logit for each of {data.n_classes} classes"
        raise SpecError(
            f"model.factory: {model.factory}'s module maps {len(data.x_train[:2])} examples to outputs of shape "
            f"{tuple(out.shape[1:])}; allowed: {wanted} ({what})"
        )


def _shown(names: dict[str, Any], most: int = 12) -> str:
    listed = [name for name in names if name][:most]
    return ", ".join(listed) + (", ..." if len(names) > most + 1 else "")


@contextlib.contextmanager
def _as_called(module: nn.Module, training: bool) -> Iterator[None]:
    """The module in training or evaluation mode, the fused attention fast path off (see the module docstring)."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    module.train(training)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="There is a performance drop")  # vmap's fallbacks, if any
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _ended(events: list[tuple[str, str]], name: str, module: nn.Module, inputs: Any, output: Any) -> None:
    """A forward hook of the trace: a submodule finished, with a tensor to show (a hook point) or not."""
    events.append(("end" if _first_tensor(output) is not None else "done", name))


def _first_tensor(output: Any) -> torch.Tensor | None:
    """What a hook point sees of a submodule's output: the tensor, or a tuple's first element."""
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return output if isinstance(output, torch.Tensor) else None


class StackedModule:
    """K runs of a user's torch.nn.Module with a leading run axis (the Model protocol, models/protocol.py)."""

    def __init__(self, config: ModuleModel, example: torch.Tensor, n_classes: int, vocab: int | None) -> None:
        self.config = config
        self.n_classes = n_classes
        self.operands = vocab  # p: operand values of a token task (the embedding's first p rows)
        self.example = example  # inputs the module is tried on (two): its hook points, its randomness
        self.neurons_from_weights = False
        self.trains_differently = True  # a module's training mode is its own business: always ask for it

    # -- the template: one run's module, what it holds and how its forward pass goes --------------------

    @cached_property
    def module(self) -> nn.Module:
        """The module whose structure every run shares (seed 0's build); runs bring their own tensors."""
        return build_module(self.config, 0)

    @cached_property
    def buffer_names(self) -> list[str]:
        """The module's persistent buffers (BatchNorm statistics): per-run state, kept by the stack."""
        persistent = set(self.module.state_dict())
        return [name for name, _ in self.module.named_buffers() if name in persistent]

    @cached_property
    def _trace(self) -> list[tuple[str, str]]:
        """(start | end, module path) of every submodule, in the order one forward pass reaches them."""
        events: list[tuple[str, str]] = []
        handles = []
        for name, submodule in self.module.named_modules():
            if name:
                handles.append(submodule.register_forward_pre_hook(lambda *_, n=name: events.append(("start", n))))
                handles.append(submodule.register_forward_hook(partial(_ended, events, name)))
        self._tried(handles)
        return events

    def _tried(self, handles: list[Any]) -> None:
        """The template module on the example inputs, in evaluation mode, with these hooks (removed after)."""
        try:
            with _as_called(self.module, False), torch.no_grad():
                self.module(self.example)
        finally:
            for handle in handles:
                handle.remove()

    @cached_property
    def activation_sizes(self) -> dict[str, int]:
        """Elements per example of each hook point's activation (what the plan's memory estimate adds up)."""
        sizes: dict[str, int] = {}

        def size_of(name: str, module: nn.Module, inputs: Any, output: Any) -> None:
            value = _first_tensor(output)
            if value is not None:
                sizes[name] = value.numel() // max(1, len(self.example))

        self._tried(
            [self.module.get_submodule(n).register_forward_hook(partial(size_of, n)) for n in self.hook_names()]
        )
        return sizes

    @cached_property
    def draws_randomly(self) -> bool:
        """Whether a training pass draws random numbers (dropout): then training passes go one run at a time."""
        params = {n: p.detach()[None] for n, p in self.module.named_parameters()}
        buffers = {n: b.detach()[None].clone() for n, b in self.module.named_buffers() if n in self.buffer_names}
        try:
            with _as_called(self.module, True), torch.no_grad():
                vmap(self._call, randomness="error")({**params, **buffers}, self.example[None])
        except RuntimeError as error:
            if "random operation" in str(error):
                return True
            raise
        return False

    @property
    def trains_on_the_host(self) -> bool:
        """Whether a training pass draws its seeds on the host (dropout: see `forward`), which a graph cannot replay."""
        return self.draws_randomly

    # -- the Model protocol ----------------------------------------------------------------------------

    @cached_property
    def readout_module(self) -> str:
        """model.readout, or the last submodule with parameters of its own to finish in the forward pass."""
        if self.config.readout is not None:
            return self.config.readout
        owners = {name for name, m in self.module.named_modules() if any(True for _ in m.parameters(recurse=False))}
        ends = [name for kind, name in self._trace if kind == "end" and name in owners]
        return ends[-1] if ends else ""

    @property
    def readout(self) -> tuple[str, ...]:
        """The readout's parameters (the slingshot's last-layer norm)."""
        prefix = f"{self.readout_module}." if self.readout_module else ""
        return tuple(f"{prefix}{name}" for name, _ in self.module.get_submodule(self.readout_module).named_parameters())

    @property
    def readout_input(self) -> str:
        """The hook point that finished last before the readout started: what the readout reads."""
        start = self._trace.index(("start", self.readout_module))
        before = [name for kind, name in self._trace[:start] if kind == "end"]  # (not "done": no tensor to read)
        return before[-1] if before else self.readout_module

    @property
    def feature_hooks(self) -> tuple[str, ...]:
        """The representation the readout reads: the one layer whose place a module is known to have."""
        return (self.readout_input,)

    @property
    def embeddings(self) -> tuple[str, ...]:
        """The weights of the module's nn.Embedding layers."""
        return tuple(f"{n}.weight" for n, m in self.module.named_modules() if isinstance(m, nn.Embedding))

    @property
    def neuron_hook(self) -> str:
        """The hook point of the first hidden layer's pre-activations: model.neurons's output."""
        if self.config.neurons is None:
            raise ValueError("model.neurons is not set")  # measures that need it are refused before training
        return self.config.neurons

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The task's inputs as they are: the module takes them as the task makes them."""
        return x

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name (module path) -> shape of one run."""
        return {name: tuple(p.shape) for name, p in self.module.named_parameters()}

    def init(self, seed: int, dtype: torch.dtype = torch.float32) -> Params:
        """Run `seed`'s parameters: its module's, as the factory initialized them, times model.init_scale."""
        module = build_module(self.config, seed)
        return {n: (p.detach() * self.config.init_scale).to(dtype) for n, p in module.named_parameters()}

    def buffers(self, seeds: list[int], device: torch.device, dtype: torch.dtype) -> Params:
        """Each run's persistent buffers as its module starts them, floating ones in the stack's dtype."""
        if not self.buffer_names:
            return {}
        per_run = [dict(build_module(self.config, seed).named_buffers()) for seed in seeds]
        cast = [{n: b.to(dtype) if b.is_floating_point() else b for n, b in run.items()} for run in per_run]
        return {name: torch.stack([run[name] for run in cast]).to(device) for name in self.buffer_names}

    def layout(self, params: Params) -> Params:
        """As they are: a module computes with its tensors as it made them."""
        return params

    def forward(
        self,
        params: Params,
        x: torch.Tensor,
        hooks: Hooks | None = None,
        *,
        buffers: Params | None = None,
        generators: list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Logits (run, batch, n_classes): the module of each run on that run's inputs x (run, batch, ...).

        generators (one per run) make it a training pass (training mode: dropout, BatchNorm's batch statistics and
        running ones updated in `buffers`); None, an evaluation."""
        state = {**params, **{n: b for n, b in (buffers or {}).items() if n in self.buffer_names}}
        training = generators is not None
        with _as_called(self.module, training):
            if hooks:
                if training:
                    raise ValueError("hooks are for evaluation passes (no generators)")
                return self._hooked(state, x, hooks)
            if training and self.draws_randomly:
                return torch.stack([self._alone(state, x, run, g) for run, g in enumerate(generators or [])])
            if x.shape[0] == 1:  # one run: the module itself, without vmap's per-operation cost (~1.3x at K = 1)
                return self._call({n: t[0] for n, t in state.items()}, x[0])[None]
            return vmap(self._call, randomness="error")(state, x)

    def _call(self, state: Params, x: torch.Tensor) -> torch.Tensor:
        """One run's module on one run's inputs; predictions (batch,) become (batch, 1)."""
        out = functional_call(self.module, state, (x,))
        return out[:, None] if out.dim() == 1 else out

    def _alone(self, state: Params, x: torch.Tensor, run: int, generator: torch.Generator) -> torch.Tensor:
        """Run `run`'s training pass on its own, the global stream seeded from its generator for the pass."""
        seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=x.device.type):
            torch.manual_seed(seed)
            return self._call({n: t[run] for n, t in state.items()}, x[run])

    def _hooked(self, state: Params, x: torch.Tensor, hooks: Hooks) -> torch.Tensor:
        """An evaluation with hooks on the whole stack's activations (see the module docstring)."""
        names = [name for name in self.hook_names() if name in hooks]
        replaced: dict[str, torch.Tensor] = {}
        logits, seen = self._recorded(state, x, names, replaced)
        for i, name in enumerate(names):
            value = hooks[name](seen[name])
            if value is not seen[name]:  # changed: what follows it is computed again, from the new activation
                replaced[name] = value
                logits, seen = self._recorded(state, x, names[i + 1 :], replaced)
        return logits

    def _recorded(
        self, state: Params, x: torch.Tensor, record: list[str], replaced: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the activations at `record`, with `replaced` activations put in place of the module's."""
        slices: dict[str, torch.Tensor] = {}  # this run's slice of each replaced activation (inside vmap)
        seen: dict[str, torch.Tensor] = {}

        def at(name: str) -> Callable[..., Any]:
            def hook(_: nn.Module, __: Any, output: Any) -> Any:
                if name in slices:
                    output = (slices[name], *output[1:]) if isinstance(output, tuple) else slices[name]
                value = _first_tensor(output)
                if name in record and value is not None:
                    seen[name] = value
                return output

            return hook

        def one_run(state: Params, x: torch.Tensor, replacing: dict[str, torch.Tensor]) -> Any:
            slices.clear()
            slices.update(replacing)
            seen.clear()
            return self._call(state, x), dict(seen)

        handles = [self.module.get_submodule(n).register_forward_hook(at(n)) for n in {*record, *replaced}]
        try:
            return vmap(one_run, randomness="error")(state, x, replaced)
        finally:
            for handle in handles:
                handle.remove()

    def run_with_cache(
        self, params: Params, x: torch.Tensor, *, buffers: Params | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Evaluation-mode logits and every hook point's activation (no gradients)."""
        return run_with_cache(self, params, x, buffers)

    def hook_names(self) -> list[str]:
        """Every submodule whose output is a tensor, in the order the forward pass finishes them."""
        return list(dict.fromkeys(name for kind, name in self._trace if kind == "end"))

    # -- what the measures read --------------------------------------------------------------------

    def at_readout(self, activation: torch.Tensor) -> torch.Tensor:
        """(run, batch, d) as it is; with a position axis, (run, batch, pos, ...) at the last position."""
        return activation[:, :, -1] if activation.dim() > 3 else activation

    def matrices(self, params: Params) -> dict[str, torch.Tensor]:
        """Every weight with two or more axes as (run, fan_in, fan_out): nn.Linear's (out, in) transposed, an
        embedding's (tokens, d) as it is, a convolution's kernels flattened into fan_in."""
        embeddings = {f"{n}.weight" for n, m in self.module.named_modules() if isinstance(m, nn.Embedding)}
        out = {}
        for name, p in params.items():
            if p.dim() >= 3:
                out[name] = p if name in embeddings else p.flatten(2).transpose(1, 2)
        return out

    def neuron_weights(self, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """model.neurons's weight (run, N, fan_in) and model.neuron_output's, transposed: (run, N, fan_out)."""
        return params[f"{self.neuron_hook}.weight"], params[f"{self.config.neuron_output}.weight"].transpose(1, 2)

    def silence_neurons(self, params: Params, keep: torch.Tensor) -> Params:
        """The parameters with the neurons where keep (run, N) is 0 cut off: their outgoing weights zeroed."""
        name = f"{self.config.neuron_output}.weight"  # (run, fan_out, N)
        return {**params, name: params[name] * keep[:, None, :]}

    def operand_embeddings(self, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """model.embedding's rows of the p operands, (run, p, d), for a and for b (one shared embedding)."""
        path = self.config.embedding
        name = path if path in params else f"{path}.weight"
        W_E = params[name][:, : self.operands]
        return W_E, W_E

    def reference(self, params: Params, run: int, buffers: Params | None = None) -> nn.Module:
        """Run `run` as its own module, in evaluation mode (an oracle, and what devinterp's LLC samples)."""
        module = build_module(self.config, 0).to(next(iter(params.values())).dtype)
        state = {n: t[run].detach() for n, t in {**params, **(buffers or {})}.items() if n in module.state_dict()}
        module.load_state_dict(state, strict=False)
        return module.eval()
