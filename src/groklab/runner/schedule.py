"""One scheduler: the stacks this process leases, handed to a backend as it has room, until every run is done.

    Work.next()  ->  backend.submit(runs) -> a future  ->  backend.wait(...)  ->  Work.done(runs, error)

The backends (runner/local.py: this process, or worker processes; runner/distributed.py: a Dask cluster) differ in
where a stack trains, not in what is scheduled: each returns concurrent.futures-style futures, waits for the first
to finish with its own wait, and stops its stacks at a step boundary when a stop is asked for. A stack that raises
is marked failed and the others go on; a stop (Ctrl-C, SIGTERM) or an OSError (the disk) ends the experiment.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Protocol

from groklab.config import Runs
from groklab.engine import interrupt
from groklab.runner.progress import ProgressBar
from groklab.store.leases import HEARTBEAT_SECONDS, Leases, holder
from groklab.store.writer import ExperimentStore

WAIT_SECONDS = 5.0
"""How often a process with nothing left to lease looks at the stacks other processes hold."""


class Backend(Protocol):
    """Where leased stacks train."""

    def capacity(self) -> int:
        """How many stacks it trains at once."""
        ...

    def submit(self, runs: Runs) -> Any:
        """Start training a stack; a future (done(), exception())."""
        ...

    def wait(self, futures: list[Any]) -> list[Any]:
        """The futures that are done, waiting a little (a fraction of a second) for the first of them."""
        ...

    def failed(self, done: list[Any]) -> list[Any]:
        """The futures among `done` whose stack did not run to an end through no fault of its own (its worker died),
        to submit again; the backend is ready for them when this returns."""
        ...

    def stop(self, futures: list[Any]) -> None:
        """A stop was asked for: let the running stacks checkpoint at a step boundary, then end them."""
        ...

    def close(self) -> None: ...


MAX_WORKER_DEATHS = 3
"""Times a stack's worker process may die before the stack is marked failed (Dask's allowed-failures)."""


def schedule(work: Work, backend: Backend) -> None:
    """Train every stack this process leases on the backend; return when every run is done (by this process or
    others), raise KeyboardInterrupt / Terminated after a stop and OSError when the disk fails."""
    running: dict[Any, Runs] = {}
    deaths: dict[str, int] = {}
    try:
        while True:
            # Lease a stack as the backend frees up (waiting for other processes' stacks only when none of ours
            # runs), and none once a stop was asked for: a stack started then would miss the signal.
            while interrupt.requested is None and len(running) < backend.capacity():
                if (runs := work.next(wait=not running)) is None:
                    break
                running[backend.submit(runs)] = runs
            if not running:
                break
            done = backend.wait(list(running))
            if interrupt.requested is not None:  # Ctrl-C or SIGTERM: every stack checkpoints, then all stop
                backend.stop(list(running))
                break
            for future in backend.failed(done):  # its worker died: the stack resumes from its checkpoint
                runs = running.pop(future)
                deaths[runs[0][0]] = deaths.get(runs[0][0], 0) + 1
                if deaths[runs[0][0]] >= MAX_WORKER_DEATHS:
                    work.done(runs, RuntimeError(f"its worker process died {MAX_WORKER_DEATHS} times"))
                else:
                    running[backend.submit(runs)] = runs
            for future in (future for future in done if future in running):
                error = future.exception()
                if isinstance(error, OSError) or (error is not None and not isinstance(error, Exception)):
                    raise error  # a stop, or the disk: not one stack's fault
                work.done(running.pop(future), error)
        if interrupt.requested is not None:
            interrupt.stop_now()
    finally:
        backend.close()


class Work:
    """The stacks of the plan, handed out one at a time as this process leases them (store/leases.py)."""

    def __init__(self, stacks: list[Runs], store: ExperimentStore, leases: Leases, bar: ProgressBar) -> None:
        self.pending = list(stacks)
        self.waiting: list[Runs] = []  # held by other processes: taken over if they die
        self.store, self.leases, self.bar = store, leases, bar
        self.started = time.time()
        self.trained: list[str] = []
        self.failed: list[str] = []
        self.told: set[str] = set()  # stacks whose wait was reported

    def next(self, wait: bool = True) -> Runs | None:
        """The next stack this process holds that has runs to train. When only stacks held by other processes are
        left, waits until they are done, or takes over those whose holder died (its leases went stale); with
        wait=False returns None then. None when every run is done."""
        while self.pending or self.waiting:
            if not self.pending:  # only other processes' stacks are left: look again in a while
                if not wait:
                    return None
                self._pause()
                self.pending, self.waiting = self.waiting, []
            runs = self.pending.pop(0)
            held = self.leases.take_stack([run_id for run_id, _ in runs])
            done = self.store.finished_run_ids() | self.store.failed_run_ids(since=self.started)
            elsewhere = [run_id for run_id, _ in runs if run_id not in done and run_id not in held]
            if elsewhere:  # (some of) its runs are another process's: wait for them, never train the stack in part
                for run_id in held:
                    self.leases.release(run_id)
                self._wait_for(runs, elsewhere)
                continue
            if any(run_id not in done for run_id in held):  # (train_here resumes its checkpoint, if it has one)
                self.trained += held
                return [member for member in runs if member[0] in held]
            for run_id in held:
                self.leases.release(run_id)
            self.bar.skip(runs)
        return None

    def _wait_for(self, runs: Runs, elsewhere: list[str]) -> None:
        """Put a stack aside until the process leasing its runs is done or dead, and say so once."""
        if runs[0][0] not in self.told:
            self.told.add(runs[0][0])
            owner = holder(self.store.root, elsewhere[0]) or {}
            who = f"{owner.get('host', '?')} pid {owner.get('pid', '?')}" if owner else "a process being started"
            self.bar.say(f"waiting for {', '.join(elsewhere)}: leased by {who} (taken over if it dies)")
        self.waiting.append(runs)

    def untrained(self, run_ids: list[str]) -> list[str]:
        """The runs neither on disk nor failed: none, unless something went wrong (the command then says so)."""
        done = self.store.finished_run_ids() | self.store.failed_run_ids(since=0.0)
        return [run_id for run_id in run_ids if run_id not in done]

    def _pause(self) -> None:
        deadline = time.monotonic() + min(WAIT_SECONDS, HEARTBEAT_SECONDS)
        while time.monotonic() < deadline:
            if interrupt.requested is not None:
                interrupt.stop_now()
            time.sleep(0.1)

    def done(self, runs: Runs, error: BaseException | None = None) -> None:
        """A stack ended: its runs are on disk, or it raised and its unfinished runs are marked failed."""
        if error is not None:
            text = "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()[-1][:500]
            self.store.mark_failed(runs, text, self.leases.owner)
            self.failed += [run_id for run_id, _ in runs if run_id not in self.store.finished_run_ids()]
        for run_id, _ in runs:
            self.leases.release(run_id)
