"""Waiting in tests that start processes: on events (a file, a state, an exit), never for a fixed time.

A busy machine trains ~15x slower than a quiet one, so every wait has the same generous deadline; a test that
passes never waits that long, and one whose process ends early fails at once with what the process said.
tests/conftest.py kills every process a test starts when the test ends, pass or fail.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

DEADLINE = 1200.0
"""Seconds a test waits for an event before failing."""

T = TypeVar("T")


def wait_for(found: Callable[[], T], process: subprocess.Popen[str] | None = None) -> T:
    """Until `found()` is truthy (polled); its value. Fails at once if `process`, which should bring it about, has
    ended, and after DEADLINE seconds."""
    deadline = time.time() + DEADLINE
    while not (value := found()):
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended ({process.returncode}): {process.communicate()[1][-2000:]}")
        if time.time() > deadline:
            raise AssertionError(f"not found in {DEADLINE:.0f} s: {getattr(found, '__name__', found)}")
        time.sleep(0.05)
    return value
