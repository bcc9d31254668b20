"""Lease files: one holder per run, heartbeats keep a lease, a stale lease is taken over exactly once."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from groklab.store import leases as leases_module
from groklab.store.leases import Leases, holder


def _age(path: Path, seconds: float) -> None:
    """Make a lease look `seconds` old, as a dead process's would."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_a_stack_is_leased_by_one_process_and_released(tmp_path: Path) -> None:
    with Leases(tmp_path, {"pid": 1}) as first, Leases(tmp_path, {"pid": 2}) as second:
        assert first.take_stack(["r0", "r1"]) == ["r0", "r1"]
        assert second.take_stack(["r0", "r1"]) == []  # the first run decides: the stack is never split
        assert holder(tmp_path, "r0") == {"pid": 1, "taken": holder(tmp_path, "r0")["taken"]}
        first.release("r0")
        assert holder(tmp_path, "r0") is None
        assert second.take_stack(["r0"]) == ["r0"]
    assert not list((tmp_path / "leases").iterdir())  # leaving releases everything held


def test_a_stale_lease_is_taken_over_by_the_next_generation(tmp_path: Path) -> None:
    with Leases(tmp_path, {"pid": 1}) as dead:
        dead.take_stack(["r0"])
        _age(tmp_path / "leases" / "r0.0", leases_module.STALE_SECONDS + 1)
        dead.held.clear()  # as if the process were gone: nothing heartbeats or releases it
    assert holder(tmp_path, "r0") is None
    with Leases(tmp_path, {"pid": 2}) as heir:
        assert heir.take_stack(["r0"]) == ["r0"]
        assert [p.name for p in (tmp_path / "leases").iterdir()] == ["r0.1"]
        assert holder(tmp_path, "r0")["pid"] == 2


def test_many_processes_racing_for_a_stale_lease_take_it_once(tmp_path: Path) -> None:
    (tmp_path / "leases").mkdir()
    stale = tmp_path / "leases" / "r0.3"
    stale.write_text("{}")
    _age(stale, leases_module.STALE_SECONDS + 1)
    contenders = [Leases(tmp_path, {"pid": i}) for i in range(8)]
    start = threading.Barrier(len(contenders))
    won: list[int] = []

    def take(i: int) -> None:
        start.wait()
        if contenders[i].take_stack(["r0"]):
            won.append(i)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(contenders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and holder(tmp_path, "r0")["pid"] == won[0]


def test_the_heartbeat_keeps_a_lease_fresh(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(leases_module, "HEARTBEAT_SECONDS", 0.05)
    with Leases(tmp_path, {"pid": 1}) as live:
        live.take_stack(["r0"])
        _age(tmp_path / "leases" / "r0.0", leases_module.STALE_SECONDS + 1)
        deadline = time.time() + 5
        while holder(tmp_path, "r0") is None and time.time() < deadline:
            time.sleep(0.02)
        assert holder(tmp_path, "r0") is not None  # refreshed by the heartbeat thread


def test_an_unreadable_lease_is_held_while_it_may_be_written_then_taken_over_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "leases").mkdir()
    lease = tmp_path / "leases" / "r0.0"
    for content in ("", "{half", "[5]", '{"pid": "x"}'):
        lease.write_text(content)
        assert holder(tmp_path, "r0") == {}  # just created: its process may be about to write it
        _age(lease, leases_module.WRITE_SECONDS + 1)
        with pytest.warns(leases_module.LeaseWarning, match="an empty or unreadable lease, held by no process"):
            assert holder(tmp_path, "r0") is None
    with Leases(tmp_path, {"host": "h", "pid": 2}) as heir, pytest.warns(leases_module.LeaseWarning):
        assert heir.take_stack(["r0"]) == ["r0"]
        assert [p.name for p in (tmp_path / "leases").iterdir()] == ["r0.1"]
