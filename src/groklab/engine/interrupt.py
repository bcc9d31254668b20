"""Stopping at a step boundary: Ctrl-C and SIGTERM, while an experiment trains, set a flag the training loop
reads before each step, so a stack checkpoints a consistent state (never half an optimizer update) and
then stops. A second signal stops at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (SLURM, `timeout`, `docker stop`): stop like Ctrl-C."""


requested: int | None = None
"""The signal that asked training to stop, if any (read by the loop before each step; written only here:
request and clear)."""


def stop_now() -> None:
    """Raise what the requested signal means: KeyboardInterrupt for SIGINT, Terminated for SIGTERM."""
    raise Terminated if requested == signal.SIGTERM else KeyboardInterrupt


def request(signum: int, again_stops_at_once: bool = True) -> None:
    """Ask the training loop to stop at its next step boundary. A second request stops at once (Ctrl-C twice),
    unless again_stops_at_once is False: a worker process hears SIGTERM from its parent and from a signal to its
    whole process group, and must still stop at a step boundary (after its checkpoint)."""
    global requested
    if requested is not None and again_stops_at_once:
        stop_now()
    requested = signum


def clear() -> None:
    """Forget a request (the stop it asked for is done)."""
    global requested
    requested = None


@contextmanager
def at_step_boundaries() -> Iterator[None]:
    """While training, SIGINT and SIGTERM stop at the next step boundary. Only in the main thread (signal
    handlers live there); elsewhere, a notebook kernel's thread for instance, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    clear()
    # A signal this process was told to ignore (a background job's SIGINT) stays ignored.
    handled = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, lambda signum, frame: request(signum)) for s in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        clear()
