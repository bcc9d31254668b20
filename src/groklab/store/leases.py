"""Leases: which process trains which runs, when several share one experiment directory.

Any number of `groklab run` processes on one --out (one machine, or several sharing a filesystem: a SLURM
array job with the same command in every task) split the work through lease files, one per run:

    DIR/leases/<run_id>.<generation>     {"host", "pid", "device", "taken"}; its mtime is the heartbeat

A lease is taken by creating its file exclusively (O_CREAT | O_EXCL: atomic on local filesystems and on
NFSv3+), so exactly one process gets each generation. The holder refreshes the mtime of its leases every
HEARTBEAT_SECONDS from a background thread; a lease whose mtime is older than STALE_SECONDS belongs to a
dead process (kill -9, a lost node) — on the holder's own host, a lease whose process is gone is dead at
once — and is taken over by creating the *next* generation exclusively — so
two processes that find the same stale lease cannot both take it. A lease is removed when its run is on
disk. Every process plans the same stacks (engine/plan.py plans all runs of the spec, finished or not)
and leases a stack by its first run, so a stack is never split between processes and the results equal
one process's, bit for bit.

Staleness compares the file's mtime with this machine's clock: on a shared filesystem the nodes' clocks
must agree to well within STALE_SECONDS (NTP does).
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from groklab.errors import SpecError
from groklab.store.layout import LEASE_DIR, directory


def _stale_seconds() -> tuple[float, str | None]:
    """GROKLAB_STALE_SECONDS, or 300; and what is wrong with the variable, if anything (said before any write)."""
    text = os.environ.get("GROKLAB_STALE_SECONDS")
    if text is None:
        return 300.0, None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        return 300.0, f"GROKLAB_STALE_SECONDS={text[:40]}: not a number of seconds; allowed: a number > 0 (default 300)"
    return seconds, None


STALE_SECONDS, _STALE_PROBLEM = _stale_seconds()
"""A lease not refreshed for this long is a dead process's, and its runs are taken over: 5 minutes, or
GROKLAB_STALE_SECONDS (the same in every process of the experiment). Shorter takes over sooner after a node
dies; it must stay well above the filesystem's delays and the nodes' clock differences."""


def check_environment() -> None:
    """SpecError for a GROKLAB_STALE_SECONDS that is not a number of seconds (checked before anything is written)."""
    if _STALE_PROBLEM is not None:
        raise SpecError(_STALE_PROBLEM)


HEARTBEAT_SECONDS = STALE_SECONDS / 10
"""How often a process refreshes its leases (10 beats per STALE_SECONDS)."""


def _generations(directory: Path, run_id: str) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob(f"{run_id}.*"):
        generation = path.name[len(run_id) + 1 :]
        if generation.isdigit():
            found.append((int(generation), path))
    return sorted(found)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0  # released just now: not stale


WRITE_SECONDS = 10.0
"""A lease file is written right after its exclusive create; one still empty or unreadable this long after it was
last touched (a full disk between the two, a crash, a stray file) is no process's lease."""


class LeaseWarning(UserWarning):
    """A lease file that holds no live process's lease (empty, unreadable): taken over."""


def _live(path: Path) -> dict[str, Any] | None:
    """The owner of a lease file if it is live: fresh, readable, and on this host its process still exists."""
    age = _age(path)
    if age > STALE_SECONDS:
        return None
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        owner = None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        if age < WRITE_SECONDS:
            return {}  # its process is writing it: held
        warnings.warn(f"{path}: an empty or unreadable lease, held by no process; taken over", LeaseWarning, 2)
        return None
    pid = owner.get("pid")
    if owner.get("host") == socket.gethostname() and isinstance(pid, int) and not alive(pid):
        return None  # killed on this machine: no need to wait for its heartbeat to stop
    return owner


def alive(pid: int) -> bool:
    """Whether a process of this machine exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(root: Path, run_id: str) -> dict[str, Any] | None:
    """The live lease on a run (its owner's fields), or None if no live process holds it."""
    generations = _generations(root / LEASE_DIR, run_id)
    return _live(generations[-1][1]) if generations else None


class Leases:
    """This process's leases in one experiment directory, kept alive by a heartbeat thread."""

    def __init__(self, root: Path, owner: dict[str, Any]) -> None:
        self.root, self.directory = root, root / LEASE_DIR
        self.owner = owner
        self.held: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Leases:
        directory(self.root, LEASE_DIR)
        self._thread = threading.Thread(target=self._beat, name="groklab-leases", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for run_id in list(self.held):
            self.release(run_id)

    def take_stack(self, run_ids: list[str]) -> list[str]:
        """Lease a stack: its first run decides (another live process holds it: []), then the others that are
        free. Returns the runs this process now holds."""
        if not run_ids or not self._take(run_ids[0]):
            return []
        return [run_ids[0], *(run_id for run_id in run_ids[1:] if self._take(run_id))]

    def release(self, run_id: str) -> None:
        """Give a run up (it is on disk, or failed)."""
        with self._lock:
            path = self.held.pop(run_id, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def _take(self, run_id: str) -> bool:
        generations = _generations(self.directory, run_id)
        if generations and _live(generations[-1][1]) is not None:
            return False  # a live process holds it
        generation = generations[-1][0] + 1 if generations else 0
        path = self.directory / f"{run_id}.{generation}"
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False  # another process took this generation first
        with os.fdopen(fd, "w") as handle:
            json.dump(self.owner | {"taken": time.time()}, handle)
        for _, stale in generations:  # the dead holders' files: only the newest generation counts
            stale.unlink(missing_ok=True)
        with self._lock:
            self.held[run_id] = path
        return True

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with self._lock:
                paths = list(self.held.values())
            for path in paths:
                try:
                    os.utime(path)
                except FileNotFoundError:
                    pass  # released meanwhile
