"""The training step captured once in a CUDA graph and replayed: the GPU runs the step's ~200-400 kernels without
waiting for Python to launch each one.

A small model's GPU step is launch-bound: nanda-modadd's step kept an H100 busy 1.7 of its 7.4 ms (docs/
benchmarks.md, GPU). A CUDA graph records the kernels of one step (forward, backward, Grokfast, the optimizer)
with their arguments and replays them as one launch. What a replay cannot do is read Python: every kernel keeps the
tensors (addresses) and scalars it had at capture. So

- what changes with the step is a device tensor the stack fills before each replay: the step itself (warmup, bias
  corrections, Grokfast's window: engine/optim.py, engine/gradients.py) and, with minibatches, the (run, batch)
  index of the next batch, still drawn on the host from each run's generator (`Stack.batch_index`);
- each run's dropout generator is registered with the graph, which advances its offset at every replay;
- what the graph baked in (every tensor the step reads or writes, by identity, and the host facts that chose its
  kernels) is compared before each replay (`baked`): a run that leaves the stack (`select`), a training set that
  shrinks, a resumed checkpoint or a switched hyperparameter makes the next step capture again.

A stack keeps one graph per batch shape (an epoch's last batch may be shorter). The step that measures its update
(the one after an evaluation) and the first WARMUP steps of each new graph run eagerly with the same device step,
so every step of a run has the same arithmetic: the per-run update path, even where the runs share their
hyperparameters (the shared path's lr and bias corrections are host floats). It equals the eager update to float32
rounding, step by step (tests/unit/test_captured.py). Evaluation stays eager: it runs once per eval_every steps,
where a graph would not pay for its capture.

Which devices capture is GRAPHS: CUDA's graph, and nothing else (a CPU step is compute-bound: docs/benchmarks.md).
The tests put a CPU stand-in there (tests/graph_standin.py) that replays recorded operators with the same rules, so
the CPU suite checks that nothing in the step reads the host at replay time, and, with GROKLAB_TEST_DEVICE=cuda, the
same tests run the real graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from groklab.engine.stack import Stack
from groklab.models.protocol import TrainsOnTheHost

WARMUP = 2
"""Eager steps before each capture (on a side stream on CUDA): cuBLAS workspaces and the autograd engine's lazy
state exist before the graph records, as torch.cuda.graph's documentation asks."""


class Graph(Protocol):
    """A recorded step: `capture` records fn and performs it once; `replay` performs it again."""

    def warm_up(self, fn: Callable[[], None]) -> None: ...

    def capture(self, fn: Callable[[], None]) -> None: ...

    def replay(self) -> None: ...


class CudaGraph:
    """torch.cuda.CUDAGraph, with the stack's dropout generators registered (their Philox offsets advance at each
    replay as they would in eager steps)."""

    def __init__(self, generators: list[torch.Generator]) -> None:
        self.graph = torch.cuda.CUDAGraph()
        for generator in generators:
            self.graph.register_generator_state(generator)

    def warm_up(self, fn: Callable[[], None]) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)

    def capture(self, fn: Callable[[], None]) -> None:
        with torch.cuda.graph(self.graph):
            fn()
        self.graph.replay()  # capturing records the kernels without running them

    def replay(self) -> None:
        self.graph.replay()


GRAPHS: dict[str, Callable[[list[torch.Generator]], Graph]] = {"cuda": CudaGraph}
"""Device type -> how a stack there records its step. A device type not listed trains eagerly."""


@dataclass
class Recording:
    """One graph of a stack's step, for one batch shape (an epoch's last batch may be smaller than the others)."""

    graph: Graph
    index: torch.Tensor | None
    """The (run, batch) index the graph gathers its batch at (filled before each replay); None: full batch."""
    eager_left: int = WARMUP
    recorded: bool = False


class CapturedStep:
    """A stack's training step as graphs (one per batch shape), captured again whenever what they baked in changed."""

    def __init__(self, stack: Stack, make_graph: Callable[[list[torch.Generator]], Graph]) -> None:
        self.stack = stack
        self.make_graph = make_graph
        self.step = torch.zeros((), device=stack.device, dtype=stack.dtype)
        """The step the graphs read (filled before each replay); exact for integers below 2^24 in float32."""
        self.recordings: dict[tuple[int, ...] | None, Recording] = {}
        self.inputs: list[object] = []

    @staticmethod
    def for_stack(stack: Stack) -> CapturedStep | None:
        """The captured step of a stack, or None where its steps stay eager: a device without graphs (GRAPHS), a
        model that fits in closed form or whose training pass reads the host (TrainsOnTheHost), an optimizer of
        torch.optim's (one instance per run, host-side state: takes_device_step)."""
        make_graph, model = GRAPHS.get(stack.device.type), stack.model
        on_the_host = isinstance(model, TrainsOnTheHost) and model.trains_on_the_host and stack.runs.train_generators
        if make_graph is None or stack.fits_in_closed_form or on_the_host or not stack.optimizer.takes_device_step:
            return None
        return CapturedStep(stack, make_graph)

    def __call__(self, step: int, measure_update: bool) -> None:
        """Train `step`: replay its batch shape's graph; or eagerly, to measure the update or to warm up before a
        capture."""
        stack = self.stack
        index = stack.batch_index()
        inputs = baked(stack)
        if not _same(inputs, self.inputs):
            # New, or a run left, a training set shrank, a checkpoint was loaded, a switch changed a kernel.
            self.recordings, self.inputs = {}, inputs
        shape = None if index is None else tuple(index.shape)
        if shape not in self.recordings:
            graph = self.make_graph(list(stack.runs.train_generators or []))
            self.recordings[shape] = Recording(graph, None if index is None else torch.empty_like(index))
        recording = self.recordings[shape]
        self.step.fill_(step)
        if recording.index is not None and index is not None:
            recording.index.copy_(index)
        if measure_update:
            stack.descend(*stack.gather(recording.index), self.step, measure_update=True)
        elif recording.recorded:
            recording.graph.replay()
        elif recording.eager_left:
            recording.eager_left -= 1
            recording.graph.warm_up(lambda: self._descend(recording.index))
        else:
            recording.graph.capture(lambda: self._descend(recording.index))  # records the step, performs it once
            recording.recorded = True

    def _descend(self, index: torch.Tensor | None) -> None:
        """The step a graph records: the batch at its static index, the update at the static step."""
        self.stack.descend(*self.stack.gather(index), self.step)


def baked(stack: Stack) -> list[object]:
    """What a captured step keeps from its capture: every tensor it reads or writes (compared by identity, since a
    graph keeps their addresses) and the host facts that chose its kernels (compared by value)."""
    optimizer, runs = stack.optimizer, stack.runs
    tensors = [
        *stack.params.values(),
        *optimizer.state.values(),
        *optimizer.filter_state.values(),
        *optimizer.hyper.values(),
        *runs.buffers.values(),
        runs.x_train,
        runs.y_train,
        runs.kept,
    ]
    return [*tensors, (optimizer.uses_decay, optimizer.uses_momentum)]


def _same(now: list[object], then: list[object]) -> bool:
    """Tensors by identity, host facts by value."""
    return len(now) == len(then) and all(
        a is b if isinstance(a, torch.Tensor) or a is None else a == b for a, b in zip(now, then)
    )
