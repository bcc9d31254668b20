"""A stack's checkpoint: everything its training needs to continue bit-identically — the state_dicts of the Stack
(parameters, optimizer, generators, ...), the Recorder and each run's Milestones, and the loop's own state — in one
file with a header that says whose it is without reading the rest:

    groklab-checkpoint 1
    {"ids": ["run-0000", ...], "step": 1200, "bytes": 81234, "sha256": "..."}    the header, one line of JSON
    <bytes bytes>                                                                  torch.save of the state

Deciding which stack a checkpoint belongs to (and whether it is whole: its length) reads the header only; resuming
reads the payload once, checks its SHA-256 and loads it with weights_only=True (tensors and plain containers).
Written atomically (groklab.files)."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from groklab.files import atomic_write

MAGIC = b"groklab-checkpoint 1\n"
HEADER_BYTES = 1 << 20
"""The longest header read (a stack of 16k runs' ids); a longer first line is not a checkpoint of ours."""


class DamagedCheckpoint(ValueError):
    """A checkpoint that cannot be read, is cut short, or whose checksum does not match: never resumed from."""


@dataclass(frozen=True)
class Header:
    """Whose checkpoint it is, and how to tell that its payload is whole."""

    ids: list[str]
    """The runs of the stack, in stack order."""
    step: int
    """The step training continues at."""
    bytes: int
    sha256: str


@dataclass
class Checkpoint:
    """The runs of a stack, the step their training continues at, and the state it continues from."""

    ids: list[str]
    step: int
    state: dict[str, Any]
    """{"stack": Stack.state_dict(), "recorder": Recorder.state_dict(), "milestones": {run id: Milestones
    .state_dict()}, "loop": the loop's LoopState}."""


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write a checkpoint atomically (a temporary file renamed over the previous one)."""
    payload = io.BytesIO()
    torch.save(checkpoint.state, payload)
    data = payload.getvalue()
    header = Header(list(checkpoint.ids), checkpoint.step, len(data), hashlib.sha256(data).hexdigest())
    line = json.dumps(vars(header)).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_bytes(MAGIC + line + data))


def read_header(path: Path) -> Header:
    """The header of a checkpoint, or DamagedCheckpoint (not ours, or cut short: its length tells)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(len(MAGIC)) != MAGIC:
                raise DamagedCheckpoint(f"{path}: cannot be read (not a groklab checkpoint, or one of an older format)")
            line = handle.readline(HEADER_BYTES)
            fields = json.loads(line)
            header = Header(
                ids=[str(i) for i in fields["ids"]],
                step=int(fields["step"]),
                bytes=int(fields["bytes"]),
                sha256=str(fields["sha256"]),
            )
            size = handle.seek(0, io.SEEK_END)
    except DamagedCheckpoint:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DamagedCheckpoint(f"{path}: cannot be read ({type(error).__name__})") from None
    if size != len(MAGIC) + len(line) + header.bytes:
        written = len(MAGIC) + len(line) + header.bytes
        raise DamagedCheckpoint(f"{path}: cannot be read (cut short: {size} of the {written} bytes written)")
    return header


def load(path: Path) -> Checkpoint:
    """A checkpoint (its state: tensors and plain containers only), or DamagedCheckpoint."""
    header = read_header(path)
    try:
        with open(path, "rb") as handle:
            handle.seek(-header.bytes, io.SEEK_END)
            data = handle.read()
        if hashlib.sha256(data).hexdigest() != header.sha256:
            raise DamagedCheckpoint(f"{path}: cannot be read (checksum mismatch)")
        return Checkpoint(header.ids, header.step, torch.load(io.BytesIO(data), weights_only=True))
    except DamagedCheckpoint:
        raise
    except Exception as error:  # removed meanwhile, not a torch file: all mean "do not resume from it"
        raise DamagedCheckpoint(f"{path}: cannot be read ({type(error).__name__})") from None
