"""Training the stacks on a Dask cluster (`groklab run SPEC --scheduler tcp://HOST:PORT`; docs/cluster.md).

Each leased stack is one Dask task (DaskCluster: a backend of runner/schedule.py). The worker that runs it
writes, into the experiment directory (a filesystem the client and every worker share, as on a cluster), what a
local process writes: the stack's
checkpoints, its runs' progress, and each run as it finishes. When a worker dies mid-stack, Dask runs the
task again on another worker, which resumes from the stack's last checkpoint: nothing is lost, and no run
is trained twice (the steps since that checkpoint are computed again). The client holds the leases
(store/leases.py) and their heartbeat, so processes and clusters can share one directory.

Dask is an optional extra: `pip install 'groklab[dask]'`; nothing here is imported without --scheduler.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
import uuid
from typing import Any

import torch

from groklab.config import Runs, SpecError
from groklab.engine import interrupt
from groklab.engine.cores import cpu_budget
from groklab.engine.listener import Listener
from groklab.runner.local import WORKER_GRACE_SECONDS, Job, train_here
from groklab.runner.progress import ProgressBar

CONNECT_SECONDS = 10.0
"""How long to wait for the scheduler to answer before the command fails (exit 2, nothing written)."""

ADDRESS = re.compile(r"^((tcp|tls|ws|wss|ucx)://)?[^\s/:]+:\d+$")
"""[PROTOCOL://]HOST:PORT, as `dask scheduler` prints it (tcp:// when no protocol is given)."""


def connect(address: str) -> Any:
    """A Dask client of the scheduler at `address`, or SpecError: Dask missing, a malformed address, or no
    scheduler answering there."""
    try:
        from distributed import Client
    except ImportError:
        raise SpecError(f"--scheduler {address}: needs Dask; install it with pip install 'groklab[dask]'") from None
    if not ADDRESS.match(address):
        raise SpecError(
            f"--scheduler {address}: not a scheduler address; allowed: tcp://HOST:PORT (or tls://HOST:PORT)"
        )
    # Dask's own timeout does not bound its handshake: a port that accepts and never speaks Dask (an HTTP server,
    # the dashboard's 8787 by mistake) would hang for good. The client is made in a thread that is given up on.
    made: dict[str, Any] = {}

    def make() -> None:
        try:
            made["client"] = Client(address, timeout=f"{CONNECT_SECONDS:g}s", set_as_default=False)
        except Exception:  # OSError / TimeoutError / a junk answer, as distributed words it
            pass

    thread = threading.Thread(target=make, name="groklab-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_SECONDS + 2)
    if "client" not in made:
        sys.unraisablehook = _quiet_failed_client(sys.unraisablehook)
        raise SpecError(
            f"--scheduler {address}: no Dask scheduler answered within {CONNECT_SECONDS:g} s; start one with "
            "`dask scheduler` and give the address it prints"
        )
    return made["client"]


def _quiet_failed_client(previous: Any) -> Any:
    """An unraisable-exception hook that drops what a Dask client that never connected says when it is collected
    (its close times out after 20 s: a 9-line "Exception ignored" traceback); the command has said what is wrong."""

    from distributed import Client

    def hook(unraisable: Any) -> None:
        if unraisable.object is not Client.__del__:
            previous(unraisable)

    return hook


class DaskCluster:
    """The backend that sends each leased stack to the cluster as a task, as many at once as it has threads."""

    def __init__(self, client: Any, job: Job, bar: ProgressBar) -> None:
        from distributed import Event

        self.client, self.job, self.bar = client, job, bar
        self.stop_event = Event(f"groklab-stop-{uuid.uuid4().hex}", client=client)
        self.runs: dict[Any, Runs] = {}

    def capacity(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def submit(self, runs: Runs) -> Any:
        key = f"groklab-{runs[0][0]}-{uuid.uuid4().hex[:8]}"
        future = self.client.submit(_train_task, runs, self.job, self.stop_event.name, pure=False, key=key)
        self.runs[future] = runs
        return future

    def wait(self, futures: list[Any]) -> list[Any]:
        from distributed import wait

        try:
            with self.client.as_current():  # Dask's own wait, through this (not default) client
                done, _ = wait(futures, timeout=0.5, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return []
        for future in done:  # the remote worker's progress is not reported step by step: count it now
            self.bar.skip(self.runs.pop(future, []))
        return list(done)

    def failed(self, done: list[Any]) -> list[Any]:
        return []  # Dask reruns a task whose worker died (its allowed-failures), resumed from its checkpoint

    def stop(self, futures: list[Any]) -> None:
        """The running stacks checkpoint on their workers at a step boundary, then stop."""
        from distributed import wait

        self.stop_event.set()
        try:
            with self.client.as_current():
                wait(futures, timeout=WORKER_GRACE_SECONDS)
        except TimeoutError:
            pass

    def close(self) -> None:
        for future in self.runs:
            future.cancel()
        self.client.close()


STOP_POLL_SECONDS = 0.2
"""How often a task asks the scheduler whether the client asked its stacks to stop (a round trip each time): a
stop reaches a stack within this, plus a step."""


def _train_task(runs: Runs, job: Job, stop_name: str) -> None:
    """On a worker: train one stack into the shared directory; stop at a step boundary (after checkpointing)
    when the client sets the stop event."""
    from distributed import Event, get_client, get_worker

    # The worker's threads share its cores: each stack gets its share (torch's one thread per core would make
    # nthreads stacks spin against each other).
    torch.set_num_threads(max(1, cpu_budget().cores // get_worker().state.nthreads))
    stopping = threading.Event()
    event = Event(stop_name, client=get_client())  # made in the task's thread, where the worker's client is

    def watch() -> None:
        while not stopping.is_set():
            if event.is_set():
                interrupt.request(signal.SIGINT)  # the loop checkpoints its stack and stops
                return
            time.sleep(STOP_POLL_SECONDS)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        train_here(runs, job, Listener())
    except KeyboardInterrupt:
        pass  # stopped by the client: the checkpoint is on disk, the next command resumes it
    finally:
        stopping.set()
        interrupt.clear()
