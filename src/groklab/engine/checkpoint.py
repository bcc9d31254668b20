"""A stack's checkpoint: everything its training needs to continue bit-identically — the state_dicts of the Stack
(parameters, optimizer, generators, ...), the Recorder and each run's Milestones, and the loop's own state — in one
file with a header that says whose it is without reading the rest:

    groklab-checkpoint 1
    {"ids": [...], "step": 1200, "fingerprint": "...", "bytes": 81234, "sha256": "..."}   the header: one JSON line
    <bytes bytes>                                                                          torch.save of the state

Deciding which stack a checkpoint belongs to (its runs, and the fingerprint of their resolved configs and of the
groklab version that wrote it) and whether it is whole (its length) reads the header only; resuming reads the
payload once, checks its SHA-256 and loads it with weights_only=True (tensors and plain containers). Written
atomically (groklab.files)."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from groklab.config import Runs
from groklab.files import atomic_write

VERSION = metadata.version("groklab")

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
    fingerprint: str
    """What the runs are: fingerprint(runs) of the stack it was saved from."""
    bytes: int
    sha256: str


@dataclass
class Checkpoint:
    """The runs of a stack, the step their training continues at, and the state it continues from."""

    ids: list[str]
    step: int
    fingerprint: str
    """fingerprint(runs) of the runs it holds: it resumes only into exactly those."""
    state: dict[str, Any]
    """{"stack": Stack.state_dict(), "recorder": Recorder.state_dict(), "milestones": {run id: Milestones
    .state_dict()}, "loop": the loop's LoopState}."""


def fingerprint(runs: Runs) -> str:
    """The SHA-256 of the runs' ids and resolved configs and of this groklab's version: a checkpoint resumes only
    into the runs it was saved from, trained by the code that saved it."""
    described = [[run_id, config.model_dump(mode="json")] for run_id, config in runs]
    return hashlib.sha256(json.dumps([VERSION, described], sort_keys=True).encode()).hexdigest()


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write a checkpoint atomically (a temporary file renamed over the previous one)."""
    payload = io.BytesIO()
    torch.save(checkpoint.state, payload)
    data = payload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    header = Header(list(checkpoint.ids), checkpoint.step, checkpoint.fingerprint, len(data), digest)
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
                fingerprint=str(fields["fingerprint"]),
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
        return Checkpoint(header.ids, header.step, header.fingerprint, torch.load(io.BytesIO(data), weights_only=True))
    except DamagedCheckpoint:
        raise
    except Exception as error:  # removed meanwhile, not a torch file: all mean "do not resume from it"
        raise DamagedCheckpoint(f"{path}: cannot be read ({type(error).__name__})") from None
