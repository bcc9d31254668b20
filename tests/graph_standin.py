"""A CPU stand-in for torch.cuda.CUDAGraph, so that the CPU suite checks what a captured step must obey.

A CUDA graph replays the kernels it recorded with the arguments they had: tensors by address, scalars by value.
`RecordedOps` records the ATen operators a function dispatches (a TorchDispatchMode sees forward, backward and
optimizer alike) and replays them the same way: each operator again, on the same tensor objects, with the same
non-tensor arguments, its result copied into the tensor it returned at capture (an address keeps its tensor).
So a step that reads a host number that changes (a Python step count, a warmup factor, a bias correction) replays
the value it had at capture and trains differently from the eager step; a host synchronization (.item(), a
data-dependent shape) or a tensor made from host data fails the capture as it would on CUDA. Random operators draw again from their generator at
each replay, as the generators a CUDA graph registers advance.

`Replayed` calls the function again at each replay: the same arithmetic as `RecordedOps` without its rules (what a
recorded step must equal bit for bit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten
DATA_DEPENDENT = {aten.nonzero.default, aten.masked_select.default, aten._unique2.default, aten.unique_dim.default}
"""Operators whose output shape depends on the values: a CUDA graph cannot record them (they synchronize)."""
FROM_THE_HOST = {aten.lift_fresh.default, aten.lift_fresh_copy.default}
"""A tensor made from Python data (torch.tensor(...)): on a GPU a copy from the host, which a graph cannot record
(it would replay the value it copied at capture)."""


class Counts:
    """How often stand-ins captured and replayed (class-wide: a test resets it)."""

    captures = 0
    replays = 0
    warm_ups = 0


class _Recorder(TorchDispatchMode):
    def __init__(self, ops: list[tuple[Any, tuple[Any, ...], dict[str, Any], Any]]) -> None:
        super().__init__()
        self.ops = ops

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in DATA_DEPENDENT:
            raise RuntimeError(f"{func} in a captured step: its shape depends on the data (a host synchronization)")
        if func in FROM_THE_HOST:
            raise RuntimeError(f"{func} in a captured step: a tensor made from host data (a host-to-device copy)")
        out = func(*args, **kwargs)
        if isinstance(out, bool | int | float):
            raise RuntimeError(f"{func} in a captured step reads a device value on the host (a synchronization)")
        self.ops.append((func, args, kwargs, out))
        return out


class RecordedOps:
    """Records a function's operators at capture and replays them (see the module docstring)."""

    def __init__(self, generators: list[torch.Generator]) -> None:
        self.ops: list[tuple[Any, tuple[Any, ...], dict[str, Any], Any]] = []

    def warm_up(self, fn: Callable[[], None]) -> None:
        Counts.warm_ups += 1
        fn()

    def capture(self, fn: Callable[[], None]) -> None:
        Counts.captures += 1
        with _Recorder(self.ops):
            fn()

    def replay(self) -> None:
        Counts.replays += 1
        # Below autograd, as a graph's kernels are: the recorded tensors keep their autograd metadata from capture.
        with torch.no_grad(), torch._C._AutoDispatchBelowADInplaceOrView():
            self._run()

    def _run(self) -> None:
        for func, args, kwargs, out in self.ops:
            if func.is_view or func._schema.is_mutable:
                # A view aliases a recorded tensor, so it sees its values; an in-place operator writes into one.
                if not func.is_view:
                    func(*args, **kwargs)
                continue
            result = func(*args, **kwargs)
            for recorded, fresh in zip(tree_flatten(out)[0], tree_flatten(result)[0]):
                if isinstance(recorded, torch.Tensor):
                    recorded.copy_(fresh)


class Replayed:
    """Calls the function again at each replay: eager arithmetic with the captured step's device step."""

    def __init__(self, generators: list[torch.Generator]) -> None:
        self.fn: Callable[[], None] | None = None

    def warm_up(self, fn: Callable[[], None]) -> None:
        fn()

    def capture(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        fn()

    def replay(self) -> None:
        assert self.fn is not None
        self.fn()
