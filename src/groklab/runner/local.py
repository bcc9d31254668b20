"""Training stacks on this machine: in this process, or in worker processes (the two local backends of
runner/schedule.py), each stack heard by the store, its trackers and the progress bar (train_here)."""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import warnings
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from groklab.config import Runs
from groklab.engine import interrupt
from groklab.engine.checkpoint import Checkpoint
from groklab.engine.listener import Listener, Listeners
from groklab.engine.loop import train_stack
from groklab.engine.result import RunResult
from groklab.errors import show_warning
from groklab.factories import add_folder
from groklab.plugins import load_plugins
from groklab.runner.trackers import Callback, Trackers
from groklab.store.checkpoints import Checkpoints
from groklab.store.writer import ExperimentStore


@dataclass(frozen=True)
class Job:
    """What a process needs to train a leased stack of an experiment (picklable: it goes to workers)."""

    root: Path
    experiment: str
    """The experiment's name (trackers name their projects after it)."""
    log: list[str]
    """The spec's trackers."""
    device: str
    callbacks: list[Callback] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    """Where the spec's factories may live besides the installed packages (its file's folder: groklab/factories.py),
    so that a worker process or a Dask worker on the same filesystem imports the same code."""


def train_here(runs: Runs, job: Job, bar: Listener) -> None:
    """Train one leased stack in this process: resumed from its checkpoint if it has one (read once, here), its
    progress, checkpoints and finished runs written as they come, every evaluation told to the trackers."""
    load_plugins()  # a worker process or a Dask worker: the measures of the plugins the spec names
    for folder in job.folders:
        add_folder(folder)
    store, checkpoints = ExperimentStore(job.root), Checkpoints(job.root)
    finished = store.finished_run_ids()
    members, resume = checkpoints.resume(runs, finished)
    if resume is None and all(run_id in finished for run_id, _ in members):
        return  # every run was on disk (its worker died after the last one was written)
    trackers = Trackers(job.root, job.experiment, job.log, members, job.callbacks)
    listener = Listeners(Saving(store, checkpoints, members), trackers, bar, *injected_faults(members))
    try:
        train_stack(members, job.device, listener, resume)
        checkpoints.remove(members)  # every run of the stack is finished and on disk
    finally:
        trackers.close()


class Saving(Listener):
    """A stack's runs on disk: their progress as it starts and at each checkpoint, the checkpoint itself, and each
    run when it finishes."""

    checkpoints = True

    def __init__(self, store: ExperimentStore, checkpoints: Checkpoints, runs: Runs) -> None:
        self.store, self.files, self.runs = store, checkpoints, runs

    def on_start(self, progress: list[RunResult]) -> None:
        self.store.write_progress(progress)

    def on_checkpoint(self, checkpoint: Checkpoint, progress: list[RunResult]) -> None:
        self.files.save(self.runs, checkpoint)
        self.store.write_progress(progress)

    def on_run_done(self, result: RunResult) -> None:
        self.store.write_new_run(result)


FAULT_VARIABLE = "GROKLAB_FAULT"
"""A test hook: RUN_ID@STEP in the environment makes the stack holding RUN_ID raise at its first evaluation at or
after STEP, as a bug or a device error would (tests/integration/test_durable.py)."""


class InjectedFault(Listener):
    def __init__(self, run_id: str, step: int) -> None:
        self.run_id, self.step = run_id, step

    def on_evaluation(self, run_id: str, step: int, metrics: dict[str, float], milestones: list[str]) -> None:
        if run_id == self.run_id and step >= self.step:
            raise RuntimeError(f"injected fault ({FAULT_VARIABLE}) in {run_id} at step {step}")


def injected_faults(runs: Runs) -> list[Listener]:
    """The fault FAULT_VARIABLE injects into this stack, if any."""
    run_id, _, step = os.environ.get(FAULT_VARIABLE, "").partition("@")
    return [InjectedFault(run_id, int(step))] if step.isdigit() and run_id in dict(runs) else []


class InProcess:
    """The backend that trains one stack at a time in this process, with every core as a torch thread."""

    def __init__(self, job: Job, threads: int, bar: Listener) -> None:
        self.job, self.bar = job, bar
        self.previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)

    def capacity(self) -> int:
        return 1

    def submit(self, runs: Runs) -> Future[None]:
        future: Future[None] = Future()
        try:
            train_here(runs, self.job, self.bar)
        except (KeyboardInterrupt, OSError):
            raise  # a stop, or the disk: not the stack's fault
        except Exception as error:  # a bug or a device error in this stack: the others go on
            future.set_exception(error)
        else:
            future.set_result(None)
        return future

    def wait(self, futures: list[Future[None]]) -> list[Future[None]]:
        return futures  # done as soon as submitted

    def failed(self, done: list[Future[None]]) -> list[Future[None]]:
        return []

    def stop(self, futures: list[Future[None]]) -> None:
        pass  # nothing runs between two submits

    def close(self) -> None:
        torch.set_num_threads(self.previous_threads)


WORKER_GRACE_SECONDS = 60.0
"""How long interrupted workers get to checkpoint (one step and one save) before they are killed."""


class WorkerPool:
    """The backend that trains a stack in each of N worker processes (spawned, never forked: torch's thread pools
    do not survive a fork), their progress sent back through a queue. A worker that dies (the OOM killer, kill -9)
    takes the pool with it: the pool is made anew and its stacks resume from their checkpoints, as Dask reruns a
    dead worker's task. Workers die with this process, even on kill -9."""

    def __init__(self, job: Job, workers: int, threads: int, bar: Listener) -> None:
        self.job, self.workers, self.threads, self.bar = job, workers, threads, bar
        self.context = multiprocessing.get_context("spawn")
        self.progress: Any = self.context.Queue()
        # The pool's workers are the child processes started from here on (a caller's own children are left alone):
        # ProcessPoolExecutor offers no public handle on its processes.
        self.others = {process.pid for process in multiprocessing.active_children()}
        self.pool = self._new_pool()
        self.futures: set[Future[None]] = set()

    def _new_pool(self) -> ProcessPoolExecutor:
        args = (self.progress, self.threads, os.getpid())
        return ProcessPoolExecutor(self.workers, self.context, initializer=_init_worker, initargs=args)

    def _processes(self) -> list[multiprocessing.process.BaseProcess]:
        return [process for process in multiprocessing.active_children() if process.pid not in self.others]

    def capacity(self) -> int:
        return self.workers

    def submit(self, runs: Runs) -> Future[None]:
        future = self.pool.submit(_train_in_worker, runs, self.job)
        self.futures.add(future)
        return future

    def wait(self, futures: list[Future[None]]) -> list[Future[None]]:
        done, _ = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
        self._drain()
        self.futures -= done
        return list(done)

    def failed(self, done: list[Future[None]]) -> list[Future[None]]:
        if not any(isinstance(future.exception(), BrokenExecutor) for future in done):
            return []
        broken = [future for future in done if isinstance(future.exception(), BrokenExecutor)]
        wait(self.futures, timeout=WORKER_GRACE_SECONDS)  # the broken pool fails all its futures
        broken += list(self.futures)
        self.futures.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = self._new_pool()
        return broken

    def stop(self, futures: list[Future[None]]) -> None:
        for process in self._processes():
            process.terminate()  # SIGTERM: each worker checkpoints its stack at the next step boundary
        wait(futures, timeout=WORKER_GRACE_SECONDS)
        self._drain()

    def close(self) -> None:
        self._drain()
        if not self.futures:  # every stack ended: the workers are idle
            self.pool.shutdown()
            return
        for process in self._processes():
            process.kill()  # every file they write is atomic: a kill loses no finished run
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _drain(self) -> None:
        while True:
            try:
                steps, milestones = self.progress.get_nowait()
            except queue_module.Empty:
                return
            self.bar.on_progress(steps, milestones)


class _QueueProgress(Listener):
    """A worker's progress, sent to the bar in the parent."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress

    def on_progress(self, steps: int, milestones: list[tuple[str, str]]) -> None:
        self.progress.put((steps, milestones))


_worker_progress: Any = None


def _init_worker(progress: Any, threads: int, parent: int) -> None:
    global _worker_progress
    _worker_progress = progress
    # The parent handles Ctrl-C. SIGTERM (from the parent, or from SLURM to the whole group) makes a worker
    # checkpoint its stack at the next step boundary and stop. If the parent dies (even by kill -9), the
    # kernel kills the workers, so nothing trains or writes into the directory after it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: interrupt.request(signum, again_stops_at_once=False))
    warnings.showwarning = show_warning  # a worker's warnings (a damaged checkpoint) read as the parent's: one line
    _die_with_parent(parent)
    torch.set_num_threads(threads)


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG); exit at once if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _train_in_worker(runs: Runs, job: Job) -> None:
    train_here(runs, job, _QueueProgress(_worker_progress))
