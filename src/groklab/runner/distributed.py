"""Training the stacks on a Dask cluster (`groklab run SPEC --scheduler tcp://HOST:PORT`; docs/cluster.md).

Each claimed stack is one Dask task. The worker that runs it writes, into the experiment directory (a
filesystem the client and every worker share, as on a cluster), what a local process writes: the stack's
checkpoints, its runs' progress, and each run as it finishes. When a worker dies mid-stack, Dask runs the
task again on another worker, which resumes from the stack's last checkpoint: nothing is lost, and no run
is trained twice (the steps since that checkpoint are computed again). The client holds the claims
(store/claims.py) and their heartbeat, so processes and clusters can share one directory.

Dask is an optional extra: `pip install 'groklab[dask]'`; nothing here is imported without --scheduler.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from groklab.config import SpecError
from groklab.engine import interrupt
from groklab.engine.plan import Plan
from groklab.runner.local import WORKER_GRACE_SECONDS, Stack, Work, train_here
from groklab.runner.trackers import Callback
from groklab.store import ExperimentStore

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
    try:
        return Client(address, timeout=f"{CONNECT_SECONDS:g}s", set_as_default=False)
    except Exception:  # OSError / TimeoutError, as distributed words it
        raise SpecError(
            f"--scheduler {address}: no Dask scheduler answered within {CONNECT_SECONDS:g} s; start one with "
            "`dask scheduler` and give the address it prints"
        ) from None


def execute_on_dask(plan: Plan, work: Work, client: Any) -> None:
    """Send every stack this process claims to the cluster as a task, as many at once as it has threads."""
    from distributed import Event

    stop = Event(f"groklab-stop-{uuid.uuid4().hex}", client=client)
    running: dict[Any, Stack] = {}
    root = str(work.store.root)
    try:
        while True:
            capacity = max(1, sum(client.nthreads().values()))
            while interrupt.requested is None and len(running) < capacity:
                if (stack := work.next(wait=not running)) is None:
                    break
                future = client.submit(_train_task, stack, plan.device, root, stop.name, work.callbacks, pure=False,
                                       key=f"groklab-{stack[0][0]}-{uuid.uuid4().hex[:8]}")  # fmt: skip
                running[future] = stack
            if not running:
                if interrupt.requested is not None:
                    interrupt.stop_now()
                break
            done = _wait(list(running), 0.5, any_done=True)
            if interrupt.requested is not None:  # the running stacks checkpoint on their workers, then stop
                stop.set()
                _wait(list(running), WORKER_GRACE_SECONDS, any_done=False)
                interrupt.stop_now()
            for future in done:
                stack = running.pop(future)
                error = future.exception() if future.status == "error" else None
                work.done(stack, error)
                work.bar.skip(stack)
    finally:
        for future in running:
            future.cancel()
        client.close()


def _wait(futures: list[Any], seconds: float, any_done: bool) -> list[Any]:
    """The futures done after waiting up to `seconds` for the first (any_done) or for all of them."""
    deadline = time.monotonic() + seconds
    while True:
        done = [future for future in futures if future.done()]
        if (done if any_done else len(done) == len(futures)) or time.monotonic() >= deadline:
            return done
        time.sleep(0.05)


def _train_task(stack: Stack, device: str, root: str, stop_name: str, callbacks: list[Callback]) -> None:
    """On a worker: train one stack into the shared directory; stop at a step boundary (after checkpointing)
    when the client sets the stop event."""
    from distributed import Event, get_client

    stopping = threading.Event()
    event = Event(stop_name, client=get_client())  # made in the task's thread, where the worker's client is

    def watch() -> None:
        while not stopping.is_set():
            if event.is_set():
                interrupt.requested = 2  # SIGINT: the loop checkpoints its stack and stops
                return
            time.sleep(1.0)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        train_here(stack, device, ExperimentStore(Path(root)), lambda steps, events: None, callbacks)
    except KeyboardInterrupt:
        pass  # stopped by the client: the checkpoint is on disk, the next command resumes it
    finally:
        stopping.set()
        interrupt.requested = None
