"""A stack's checkpoint: everything its training needs to continue bit-identically — parameters and
BatchNorm statistics, optimizer moments and (switched) hyperparameters, every per-run generator (batch
order, dropout masks), the epoch's permutation, the recorder's history, each run's events, the step and
the evaluation schedule. Written atomically; read with weights_only=True (tensors and plain containers)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from groklab.engine.events import RunEvents
from groklab.engine.recorder import Recorder
from groklab.engine.stack import Stack
from groklab.files import atomic_write


def stack_state(stack: Stack, recorder: Recorder, events: dict[str, RunEvents], loop: dict[str, Any]) -> dict:
    """The state of a stack between two steps, as tensors and plain containers."""
    live = set(stack.ids)  # runs that left the stack are on disk already
    return {
        "ids": list(stack.ids),
        "params": {n: p.detach().clone() for n, p in stack.params.items()},
        "init_params": dict(stack.init_params),
        "buffers": dict(stack.buffers),
        "optimizer": stack.optimizer.state_dict(),
        "batch_generators": [g.get_state() for g in stack.batch_generators],
        "train_generators": [g.get_state() for g in stack.train_generators or []],
        "order": stack.order,
        "cursor": stack.cursor,
        "kept": stack.kept,
        "shrunk_at": list(stack.shrunk_at),
        "recorder": {
            "history": {run: h for run, h in recorder.history.items() if run in live},
            "series": {
                run: {
                    name: [(step, torch.from_numpy(array)) for step, array in points] for name, points in named.items()
                }
                for run, named in recorder.series.items()
                if run in live
            },
            "columns": recorder.columns,
            "evaluations": recorder.evaluations,
            "snapshots": {run: steps for run, steps in recorder.snapshots.items() if run in live},
        },
        "events": {run_id: vars(e) for run_id, e in events.items() if run_id in live},
        "loop": loop,
    }


def restore(stack: Stack, recorder: Recorder, events: dict[str, RunEvents], state: dict) -> dict[str, Any]:
    """Put a saved state into a freshly built stack of the same runs; returns the loop's own state."""
    if state["ids"] != stack.ids:
        raise ValueError(f"checkpoint of runs {state['ids']} does not fit the stack {stack.ids}")
    stack.params = {n: p.requires_grad_() for n, p in stack.model.layout(state["params"]).items()}
    stack.init_params, stack.buffers = state["init_params"], state["buffers"]
    stack.optimizer.load_state_dict(state["optimizer"])
    for generator, saved in zip(stack.batch_generators, state["batch_generators"]):
        generator.set_state(saved)
    for generator, saved in zip(stack.train_generators or [], state["train_generators"]):
        generator.set_state(saved)
    stack.order, stack.cursor = state["order"], state["cursor"]
    stack.kept, stack.shrunk_at = state.get("kept"), state.get("shrunk_at", [None] * len(stack.ids))
    saved = state["recorder"]
    recorder.history.update(saved["history"])
    recorder.columns, recorder.evaluations = saved["columns"], saved["evaluations"]
    recorder.snapshots.update(saved.get("snapshots", {}))  # a checkpoint from before checkpoint_steps has none
    recorder.series.update(
        {
            run: {name: [(step, array.numpy()) for step, array in points] for name, points in named.items()}
            for run, named in saved["series"].items()
        }
    )
    for run_id, fields in state["events"].items():
        vars(events[run_id]).update(fields)
    return state["loop"]


class DamagedCheckpoint(ValueError):
    """A checkpoint that cannot be read or whose checksum does not match: never resumed from."""


def save(path: Path, state: dict) -> None:
    """Write a checkpoint atomically (a temporary file renamed over the previous one), with the SHA-256 of
    its payload inside, so that a truncated or altered file is detected instead of resumed from."""
    payload = io.BytesIO()
    torch.save(state, payload)
    data = payload.getvalue()
    wrapped = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(wrapped, tmp))


def load(path: Path) -> dict:
    """Read a checkpoint (tensors and plain containers only), or raise DamagedCheckpoint."""
    try:
        wrapped = torch.load(path, weights_only=True)
        data = wrapped["payload"].numpy().tobytes()
        if hashlib.sha256(data).hexdigest() != wrapped["sha256"]:
            raise DamagedCheckpoint(f"{path}: checksum mismatch")
        return torch.load(io.BytesIO(data), weights_only=True)
    except DamagedCheckpoint:
        raise
    except Exception as error:  # truncated, not a zip, not ours: all mean "do not resume from it"
        raise DamagedCheckpoint(f"{path}: cannot be read ({type(error).__name__})") from None
