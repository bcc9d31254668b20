"""Leases: which process trains which runs, when several share one experiment directory.

Any number of `groklab run` processes on one --out (one machine, or several sharing a filesystem: a SLURM
array job with the same command in every task) split the work through lease files, one per run:

    DIR/leases/<run_id>.<generation>     {"host", "pid", "pid_started", "device", "taken"}; its mtime is the heartbeat

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
from groklab.files import atomic_write
from groklab.store.layout import LEASE_DIR, PRESENCE, directory


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
    """The owner of a lease file if it is live; a lease that is not, and not plainly its ended process's, is
    reported (a LeaseWarning saying why) and taken over."""
    owner, problem = _judged(path)
    if problem is not None:
        warnings.warn(f"{path}: {problem}; taken over", LeaseWarning, 3)
    return owner


def _judged(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The owner of a lease (or presence) file if it is live: fresh, readable, and on this host its process still
    the one that wrote it; else None, and what is wrong with the file unless its process plainly ended."""
    age = _age(path)
    if age > STALE_SECONDS:
        return None, None
    if age < -STALE_SECONDS:  # no heartbeat is dated ahead of this clock by more than the clocks may differ
        return None, f"dated {-age:.0f} s in the future, held by no process"
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        owner = None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        if age < WRITE_SECONDS:
            return {}, None  # its process is writing it: held
        return None, "an empty or unreadable lease, held by no process"
    if owner.get("host") != socket.gethostname():
        return owner, None  # another machine's: its heartbeat decides
    if not alive(owner["pid"]):
        return None, None  # ended on this machine: no need to wait for its heartbeat to stop
    if (started := process_started(owner["pid"])) is not None and owner.get("pid_started") != started:
        return None, (
            f"names process {owner['pid']}, which is not the process that wrote it (that one ended and its pid was "
            "reused, or groklab did not write the file)"
        )
    return owner, None


def alive(pid: int) -> bool:
    """Whether a process of this machine exists and has not ended (another user's counts; one killed but not yet
    reaped by its parent, a zombie, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OverflowError:
        return False  # not a pid at all
    return _proc_stat(pid)[:1] != ["Z"]


def process_started(pid: int) -> str | None:
    """When a process of this machine started, in clock ticks since boot (/proc/PID/stat): with its pid, it names
    one process for good, as a pid alone does not once the pid is reused. None where /proc is not (macOS)."""
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else None


def _proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first), or [] where there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return []
    return text[text.rfind(")") + 2 :].split()


def holder(root: Path, run_id: str) -> dict[str, Any] | None:
    """The live lease on a run (its owner's fields), or None if no live process holds it."""
    generations = _generations(root / LEASE_DIR, run_id)
    return _live(generations[-1][1]) if generations else None


class Leases:
    """This process's leases in one experiment directory, kept alive by a heartbeat thread, and its presence there
    (DIR/leases/<host>-<pid>.process, heartbeaten alike): a process with another spec is refused while any other
    process is present (store/writer.py)."""

    def __init__(self, root: Path, owner: dict[str, Any]) -> None:
        self.root, self.directory = root, root / LEASE_DIR
        self.owner = owner
        self.held: dict[str, Path] = {}
        self.presence = self.directory / f"{owner.get('host', socket.gethostname())}-{owner['pid']}{PRESENCE}"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Leases:
        if self._thread is None:
            directory(self.root, LEASE_DIR)
            atomic_write(self.presence, lambda p: p.write_text(json.dumps(self.owner)))
            self._thread = threading.Thread(target=self._beat, name="groklab-leases", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            return  # never entered (the directory could not be made)
        self._stop.set()
        self._thread.join()
        for run_id in list(self.held):
            self.release(run_id)
        self.presence.unlink(missing_ok=True)

    def others(self) -> list[dict[str, Any]]:
        """The other live processes present in the directory (their owners' fields); dead ones' files go."""
        found = []
        for path in sorted(self.directory.glob(f"*{PRESENCE}")):
            if path == self.presence:
                continue
            if (owner := _judged(path)[0]) is None:
                path.unlink(missing_ok=True)
            else:
                found.append(owner)
        return found

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
                paths = [self.presence, *self.held.values()]
            for path in paths:
                try:
                    os.utime(path)
                except FileNotFoundError:
                    pass  # released meanwhile
