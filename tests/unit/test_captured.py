"""The captured step (engine/captured.py): a stack whose step is recorded once and replayed trains what the eager
step trains (to float32 rounding), for every kind of stack the engine has: full batch and minibatch, dropout masks,
BatchNorm statistics, a user's module, a hyperparameter switch, a training set that shrinks, runs that leave,
warmup, Grokfast, ⊥Grad, Muon, and every built-in's first steps. On a CPU the graph is tests/graph_standin.py's RecordedOps, which replays operators as a CUDA graph does (a
host number baked in at capture trains wrongly, a host synchronization fails); with GROKLAB_TEST_DEVICE=cuda the
same tests run torch.cuda.CUDAGraph.

- recorded == replayed, bit for bit: RecordedOps against a graph that calls the step again at each replay (the
  same arithmetic, nothing baked in), so nothing in the step reads the host at replay time;
- step by step from the same state, the captured update == the eager update to float32 rounding (the captured
  step takes the per-run update path with a device step, engine/optim.py);
- run i of a captured stack == run i captured alone;
- a captured stack interrupted and resumed from its checkpoint gives the same runs bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from groklab import RunConfig
from groklab.config import expand_runs, resolve_spec
from groklab.engine import captured
from groklab.engine.captured import GRAPHS, CapturedStep, Graph
from groklab.engine.loop import train_stack
from groklab.engine.stack import Stack
from groklab.experiments import builtin_specs

from ..graph_standin import RecordedOps, Replayed
from .test_checkpoint import (
    MLP_FULL,
    MLP_SHRINK,
    MODULE,
    MUON,
    NADAM,
    PARITY_MINIBATCH,
    RFM,
    TRANSFORMER,
    _assert_identical,
    _runs,
    _train,
)
from .test_engine import _assert_same, _variants

GROKFAST = {**MLP_FULL, "optimizer": {**MLP_FULL["optimizer"], "weight_decay": 1.0, "warmup_steps": 20,
                                      "orthogonal": True, "grokfast": {"filter": "ema", "alpha": 0.9, "lamb": 2.0}}}  # fmt: skip
"""Warmup, Grokfast's EMA filter and ⊥Grad's projection."""
GROKFAST_MA = {**MLP_FULL, "optimizer": {"name": "rmsprop", "lr": 0.001, "momentum": 0.5,
                                         "grokfast": {"filter": "ma", "window": 7, "lamb": 2.0}}}  # fmt: skip
"""Grokfast's moving average over a window the steps wrap around, under RMSProp with momentum."""
MODULE_BATCHNORM = {**MODULE, "model": {**MODULE["model"], "kwargs": {"p": 11, "dropout": 0.0}}}
"""A user's module with attention, LayerNorm and BatchNorm statistics (vmapped; with dropout it trains run by run
from seeds drawn on the host, and stays eager)."""
SPECS = {
    "mlp-full-batch-runs-leave": MLP_FULL,
    "parity-minibatch-dropout-switch": PARITY_MINIBATCH,
    "transformer-minibatch-dropout-warmup": TRANSFORMER,
    "mlp-training-set-shrinks": MLP_SHRINK,
    "user-module-batchnorm": MODULE_BATCHNORM,
    "transformer-muon": MUON,
    "grokfast-ema-orthograd-warmup": GROKFAST,
    "grokfast-ma-rmsprop": GROKFAST_MA,
}


class Counted:
    """Counts what a stack's graphs did (captures, replays), around any Graph."""

    captures = 0
    replays = 0

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def warm_up(self, fn: Callable[[], None]) -> None:
        self.graph.warm_up(fn)

    def capture(self, fn: Callable[[], None]) -> None:
        Counted.captures += 1
        self.graph.capture(fn)

    def replay(self) -> None:
        Counted.replays += 1
        self.graph.replay()


@contextmanager
def graphs(device: str, kind: str) -> Iterator[None]:
    """Stacks on `device` train eagerly ("eager"), recorded and replayed ("recorded": RecordedOps on a CPU, the real
    CUDA graph on a GPU), or through a graph that calls the step again ("replayed")."""
    device_type = torch.device(device).type
    saved = dict(GRAPHS)
    Counted.captures = Counted.replays = 0
    if kind == "eager":
        GRAPHS.pop(device_type, None)
    else:
        inner = Replayed if kind == "replayed" else GRAPHS.get(device_type, RecordedOps)
        GRAPHS[device_type] = lambda generators: Counted(inner(generators))
    try:
        yield
    finally:
        GRAPHS.clear()
        GRAPHS.update(saved)


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_a_recorded_step_replays_what_the_step_computes(spec: dict, device: str) -> None:
    """Whole trainings: what the graph replays equals the step called again, bit for bit (nothing is read from the
    host at replay), through every capture the stack needed."""
    runs = _runs(spec)
    with graphs(device, "replayed"):
        replayed = train_stack(runs, device)
    with graphs(device, "recorded"):
        recorded = train_stack(runs, device)
        captures, replays = Counted.captures, Counted.replays
    _assert_identical(recorded, replayed)  # and the runs really differ
    assert all(r.trained_by["step"] == "captured" for r in recorded)
    steps = max(r.steps for r in recorded)
    assert replays >= steps * 0.7, f"{replays} of {steps} steps replayed"
    # A run that left, a training set that shrank, a switched weight decay, an epoch's shorter last batch: each
    # made the stack record another graph (the Grokfast stacks keep their three runs and full batch: one graph).
    assert captures >= (1 if spec in (GROKFAST, GROKFAST_MA) else 2)


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_the_captured_update_is_the_eager_update(spec: dict, device: str) -> None:
    """Step by step from the same state: the captured step (device step, per-run update path, replayed) moves every
    weight as the eager step does, to float32 rounding. (Over a whole training the two drift apart as any two
    roundings do: Adam turns the noise-level gradients of a bias before a normalization into full-size steps.)"""
    runs = _runs(spec)
    with graphs(device, "eager"):
        eager = Stack(runs, device)
    with graphs(device, "recorded"):
        captured_stack = Stack(runs, device)
        captured_stack.captured = CapturedStep.for_stack(captured_stack)
        for step in range(16):  # warmup, the bias corrections' first steps, a wrap of Grokfast's window of 7
            eager.train_step(step)
            captured_stack.train_step(step)
            for name, p in eager.params.items():
                torch.testing.assert_close(captured_stack.params[name], p, rtol=1e-5, atol=1e-6, msg=f"{step} {name}")
            _copy_state(eager, captured_stack)  # the next step starts from the same state again
        assert Counted.replays >= 10
    moved = [not torch.equal(p, eager.runs.init_params[n]) for n, p in eager.params.items()]
    assert all(moved)


def _copy_state(source: Stack, target: Stack) -> None:
    """The source stack's parameters, optimizer state and buffers, copied into the target's tensors in place (its
    graphs keep their addresses)."""
    pairs = [(source.params, target.params), (source.optimizer.state, target.optimizer.state),
             (source.optimizer.filter_state, target.optimizer.filter_state), (source.runs.buffers, target.runs.buffers)]  # fmt: skip
    with torch.no_grad():
        for values, into in pairs:
            for name, tensor in values.items():
                into[name].copy_(tensor)


@pytest.mark.parametrize("batch_size", [None, 64])
def test_run_i_of_a_captured_stack_equals_run_i_alone(tiny_modular: RunConfig, batch_size: int | None,
                                                      device: str) -> None:  # fmt: skip
    base = tiny_modular.model_copy(
        update={"train": tiny_modular.train.model_copy(update={"steps": 60, "batch_size": batch_size})}
    )
    runs = _variants(base)
    with graphs(device, "recorded"):
        stacked = {r.run_id: r for r in train_stack(runs, device)}
        for run_id, config in runs:
            (alone,) = train_stack([(run_id, config)], device)
            _assert_same(stacked[run_id], alone)
    assert stacked["r0"].final["train_loss"] != stacked["r1"].final["train_loss"]  # the runs really differ


@pytest.mark.parametrize(("spec", "stops"), [(MLP_FULL, [2, 12, 36]), (PARITY_MINIBATCH, [1, 5, 11]),
                                             (MLP_SHRINK, [12, 30])],
                         ids=["mlp-full-batch", "parity-minibatch-dropout-switch", "mlp-training-set-shrinks"])  # fmt: skip
def test_a_captured_stack_resumes_bit_identically(spec: dict, stops: list[int], tmp_path: Path, device: str) -> None:
    runs = _runs(spec)
    with graphs(device, "recorded"):
        reference = _train(runs, device=device)
        for stop in stops:
            path = tmp_path / f"stop-{stop}.pt"
            before = _train(runs, path, stop_after=stop, device=device)
            remaining = [(run_id, c) for run_id, c in runs if run_id not in {r.run_id for r in before}]
            after = _train(remaining, path, device=device)
            _assert_identical(before + after, reference)


@pytest.mark.parametrize("spec", [NADAM, RFM, MODULE], ids=["torch-optim", "closed-form", "module-dropout"])
def test_stacks_without_a_device_step_stay_eager(spec: dict) -> None:
    """A torch.optim class keeps its state on the host; a kernel machine solves, it does not step; a user's module
    with dropout seeds each run's pass from a number drawn on the host."""
    with graphs("cpu", "recorded"):
        assert CapturedStep.for_stack(Stack(_runs(spec)[:1])) is None
        assert CapturedStep.for_stack(Stack(_runs(MLP_FULL)[:1])) is not None


def test_the_cpu_trains_eagerly(tiny_modular: RunConfig) -> None:
    """No graph on a CPU (a CPU step is compute-bound): the CPU path is the eager one."""
    assert "cpu" not in GRAPHS and CapturedStep.for_stack(Stack([("r0", tiny_modular)])) is None
    (run,) = train_stack([("r0", tiny_modular.model_copy(update={"train": tiny_modular.train.model_copy(
        update={"steps": 5})}))])  # fmt: skip
    assert run.trained_by["step"] == "eager"


def test_the_stand_in_replays_what_was_captured_and_refuses_host_reads() -> None:
    """The stand-in's rules, which make the tests above able to fail: a host number is baked in at capture (as a
    CUDA kernel's scalar argument is), a device tensor is read anew at each replay, .item() cannot be captured."""
    x, step, host = torch.zeros(2), torch.zeros(()), [1.0]
    graph = RecordedOps([])
    graph.capture(lambda: x.add_(step + host[0]))  # performs the step once: x = 0 + 1
    step.fill_(10.0)
    host[0] = 100.0
    graph.replay()  # x += step (now 10) + the host number as it was at capture (1)
    assert x.tolist() == [12.0, 12.0]
    with pytest.raises(RuntimeError, match="synchronization"):
        RecordedOps([]).capture(lambda: x.add_(x.sum().item()))
    with pytest.raises(RuntimeError, match="depends on the data"):
        RecordedOps([]).capture(lambda: torch.nonzero(x))
    with pytest.raises(RuntimeError, match="host data"):
        RecordedOps([]).capture(lambda: x.add_(torch.tensor([1.0, 2.0])))
    assert captured.WARMUP >= 1


@pytest.mark.parametrize("name", sorted(builtin_specs()))
def test_every_built_in_step_can_be_captured(name: str, device: str) -> None:
    """Each built-in's first run (its quick variant where it has one), eight steps: two eager, the capture, replays
    (an epoch's shorter last batch records another graph); the recorded graph's weights equal those of the step
    called again, bit for bit. A host read anywhere in its model, loss or optimizer fails the capture or the
    comparison."""
    config = expand_runs(resolve_spec(name, quick="quick:" in builtin_specs()[name].read_text()))[0]
    stacks = {}
    for kind in ("replayed", "recorded"):
        with graphs(device, kind):
            stack = stacks[kind] = Stack([("r0", config)], device)
            stack.captured = CapturedStep.for_stack(stack)
            for step in range(8):
                stack.train_step(step)
    if stacks["recorded"].captured is None:  # a kernel machine, a torch.optim class, a module drawing on the host
        return
    assert Counted.replays >= 3
    for n, p in stacks["replayed"].params.items():
        assert torch.equal(stacks["recorded"].params[n], p), n
    assert any(not torch.equal(p, stacks["replayed"].runs.init_params[n]) for n, p in stacks["replayed"].params.items())
