"""Training the stacks on this machine — in this process or in worker processes — one claimed stack at a
time, so that other processes sharing the directory take the rest (store/claims.py)."""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import queue as queue_module
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from groklab.config import RunConfig
from groklab.engine import interrupt
from groklab.engine.loop import train_stack
from groklab.engine.plan import Plan
from groklab.engine.result import RunResult
from groklab.runner.trackers import Callback, Sinks
from groklab.store import ExperimentStore
from groklab.store.claims import HEARTBEAT_SECONDS, Claims

Stack = list[tuple[str, RunConfig]]


class Progress:
    """tqdm bar over run-steps, with the count of runs memorized and generalized so far."""

    def __init__(self, stacks: list[Stack], enabled: bool, finished: set[str]) -> None:
        self.budgets = {run_id: c.train.steps for stack in stacks for run_id, c in stack if run_id not in finished}
        total = sum(self.budgets.values())  # the runs left to train (a resumed stack reports its saved steps)
        self.total_runs = len(self.budgets)
        self.bar = tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True, file=sys.stderr)
        self.counts = {"memorized": 0, "generalized": 0, "diverged": 0}

    def __call__(self, steps: int, events: list[tuple[str, str]]) -> None:
        for _, event in events:
            self.counts[event] += 1
        c = self.counts
        postfix = f"memorized {c['memorized']}/{self.total_runs} generalized {c['generalized']}/{self.total_runs}"
        if c["diverged"]:
            postfix += f" diverged {c['diverged']}"
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(steps)

    def skip(self, stack: Stack) -> None:
        """A stack another process trained (or a remote worker did): its runs' steps count as done here."""
        self.bar.update(sum(self.budgets.pop(run_id, 0) for run_id, _ in stack))

    def close(self) -> None:
        self.bar.close()


class Work:
    """The stacks of the plan, handed out one at a time as this process claims them."""

    def __init__(
        self, stacks: list[Stack], store: ExperimentStore, claims: Claims, bar: Progress, callbacks: list[Callback]
    ) -> None:
        self.callbacks = callbacks  # users' sinks for every evaluation (runner/trackers.py)
        self.pending = list(stacks)
        self.waiting: list[Stack] = []  # held by other processes: taken over if they die
        self.store, self.claims, self.bar = store, claims, bar
        self.started = time.time()
        self.trained: list[str] = []
        self.failed: list[str] = []

    def next(self, wait: bool = True) -> Stack | None:
        """The next stack this process holds, its members as they resume (a checkpoint's runs, else the runs
        not on disk yet). When only stacks held by other processes are left, waits until they are done, or
        takes over those whose holder died (its claims went stale); with wait=False returns None then. None
        when every run is done."""
        while self.pending or self.waiting:
            if not self.pending:  # only other processes' stacks are left: look again in a while
                if not wait:
                    return None
                self._pause()
                self.pending, self.waiting = self.waiting, []
            stack = self.pending.pop(0)
            held = self.claims.claim_stack([run_id for run_id, _ in stack])
            done = self.store.finished_run_ids() | self.store.failed_run_ids(since=self.started)
            if not held and any(run_id not in done for run_id, _ in stack):
                self.waiting.append(stack)
                continue
            members = self.store.resume_members([m for m in stack if m[0] in held], done)
            if members:
                self.trained += [run_id for run_id, _ in members]
                return members
            for run_id in held:
                self.claims.release(run_id)
            self.bar.skip(stack)
        return None

    def _pause(self) -> None:
        deadline = time.monotonic() + min(WAIT_SECONDS, HEARTBEAT_SECONDS)
        while time.monotonic() < deadline:
            if interrupt.requested is not None:
                interrupt.stop_now()
            time.sleep(0.1)

    def done(self, stack: Stack, error: BaseException | None = None) -> None:
        """A stack ended: its runs are on disk, or it raised and its unfinished runs are marked failed."""
        if error is not None:
            text = "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()[-1][:500]
            self.store.mark_failed(stack, text, self.claims.owner)
            self.failed += [run_id for run_id, _ in stack if run_id not in self.store.finished_run_ids()]
        for run_id, _ in stack:
            self.claims.release(run_id)


WAIT_SECONDS = 5.0
"""How often a process with nothing left to claim looks at the stacks other processes hold."""


def owner(device: str) -> dict[str, Any]:
    """Who trains: this host and process, on a device."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "device": device}


def train_here(
    stack: Stack, device: str, store: ExperimentStore, report: Callable[..., None], callbacks: list[Callback]
) -> None:
    """Train one stack in this process, its progress and finished runs written as they come, every evaluation
    told to the spec's trackers and to the callbacks."""
    checkpoint = store.checkpoint_path(stack)
    sinks = Sinks(store, stack, callbacks)

    def finished(result: RunResult) -> None:
        store.write_new_run(result)
        sinks.finish(result.run_id)

    try:
        train_stack(stack, device, finished, report, checkpoint, store.write_progress, sinks if sinks.active else None)
    finally:
        sinks.close()


def execute(plan: Plan, work: Work) -> None:
    """Train every stack this process claims, in this process or in plan.workers worker processes."""
    if plan.workers == 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(plan.threads)
        try:
            while (stack := work.next()) is not None:
                try:
                    train_here(stack, plan.device, work.store, work.bar, work.callbacks)
                except (KeyboardInterrupt, OSError):
                    raise  # a stop, or the disk: not the stack's fault
                except Exception as error:  # a bug or a device error in this stack: the others go on
                    work.done(stack, error)
                    continue
                work.done(stack)
        finally:
            torch.set_num_threads(previous)
    else:
        _execute_in_workers(plan, work)


_worker_queue: Any = None


def _init_worker(progress_queue: Any, threads: int, parent: int) -> None:
    global _worker_queue
    _worker_queue = progress_queue
    # The parent handles Ctrl-C. SIGTERM (from the parent, or from SLURM to the whole group) makes a worker
    # checkpoint its stack at the next step boundary and stop. If the parent dies (even by kill -9), the
    # kernel kills the workers, so nothing trains or writes into the directory after it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: setattr(interrupt, "requested", signum))
    _die_with_parent(parent)
    torch.set_num_threads(threads)


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG); exit at once if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _train_in_worker(stack: Stack, device: str, root: str, callbacks: list[Callback]) -> None:
    report = lambda steps, events: _worker_queue.put((steps, events))  # noqa: E731
    train_here(stack, device, ExperimentStore(Path(root)), report, callbacks)


WORKER_GRACE_SECONDS = 60.0
"""How long interrupted workers get to checkpoint (one step and one save) before they are killed."""


def _execute_in_workers(plan: Plan, work: Work) -> None:
    # spawn, never fork: torch's thread pools do not survive a fork.
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    # The pool's workers are the child processes started from here on (a caller's own children are left alone):
    # ProcessPoolExecutor offers no public handle on its processes.
    others = {process.pid for process in multiprocessing.active_children()}

    def workers() -> list[multiprocessing.process.BaseProcess]:
        return [process for process in multiprocessing.active_children() if process.pid not in others]

    def new_pool() -> ProcessPoolExecutor:
        args = (progress_queue, plan.threads, os.getpid())
        return ProcessPoolExecutor(plan.workers, context, initializer=_init_worker, initargs=args)

    pool = new_pool()
    running: dict[Future[None], Stack] = {}
    again: list[Stack] = []  # stacks whose worker died: still claimed by this process, they resume first
    deaths: dict[str, int] = {}
    try:
        while True:
            # Claim a stack as a worker frees up (waiting for other processes' stacks only when none of ours
            # runs), and none once a stop was asked for: a worker started then would miss the signal.
            while interrupt.requested is None and len(running) < plan.workers:
                if again:
                    stack = work.store.resume_members(held := again.pop(0), work.store.finished_run_ids())
                    if not stack:  # its runs were all on disk when the worker died
                        work.done(held)
                        continue
                elif (claimed := work.next(wait=not running)) is None:
                    break
                else:
                    stack = claimed
                running[pool.submit(_train_in_worker, stack, plan.device, str(work.store.root), work.callbacks)] = stack
            if not running:
                if interrupt.requested is not None:
                    interrupt.stop_now()
                break
            done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            if interrupt.requested is not None:  # Ctrl-C or SIGTERM: every worker checkpoints, then all stop
                for process in workers():
                    process.terminate()
                wait(running, timeout=WORKER_GRACE_SECONDS)
                _drain(progress_queue, work.bar)
                interrupt.stop_now()
            _drain(progress_queue, work.bar)
            if any(isinstance(future.exception(), BrokenExecutor) for future in done):
                # A worker died (the OOM killer, kill -9) and took the pool with it: every stack that was running
                # resumes from its checkpoint in a new pool, as Dask reruns a dead worker's task; a stack whose
                # worker dies MAX_WORKER_DEATHS times is marked failed.
                wait(running, timeout=WORKER_GRACE_SECONDS)
                pool.shutdown(wait=True, cancel_futures=True)
                pool = new_pool()
                for stack in running.values():
                    deaths[stack[0][0]] = deaths.get(stack[0][0], 0) + 1
                    if deaths[stack[0][0]] >= MAX_WORKER_DEATHS:
                        work.done(stack, RuntimeError(f"its worker process died {MAX_WORKER_DEATHS} times"))
                    else:
                        again.append(stack)
                running.clear()
                continue
            for future in done:
                stack = running.pop(future)
                error = future.exception()
                if isinstance(error, OSError) or (error is not None and not isinstance(error, Exception)):
                    raise error  # a stop, or the disk: not one stack's fault
                work.done(stack, error)
        _drain(progress_queue, work.bar)
    except BaseException:
        for process in workers():
            process.kill()  # every file they write is atomic: a kill loses no finished run
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


MAX_WORKER_DEATHS = 3
"""Times a stack's worker process may die before the stack is marked failed (Dask's allowed-failures)."""


def _drain(progress_queue: Any, bar: Progress) -> None:
    while True:
        try:
            steps, events = progress_queue.get_nowait()
        except queue_module.Empty:
            return
        bar(steps, events)
