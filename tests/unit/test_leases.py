"""Lease files: one holder per run, heartbeats keep a lease, a stale lease is taken over exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
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
        assert [p.name for p in (tmp_path / "leases").glob("r0.*")] == ["r0.1"]
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
        with pytest.warns(
            leases_module.LeaseWarning, match="an empty or unreadable lease, held by no process; taken over"
        ):
            assert holder(tmp_path, "r0") is None
    with Leases(tmp_path, {"host": "h", "pid": 2}) as heir, pytest.warns(leases_module.LeaseWarning):
        assert heir.take_stack(["r0"]) == ["r0"]
        assert [p.name for p in (tmp_path / "leases").glob("r0.*")] == ["r0.1"]


def _lease(tmp_path: Path, owner: dict[str, object]) -> Path:
    (tmp_path / "leases").mkdir(exist_ok=True)
    lease = tmp_path / "leases" / "r0.0"
    lease.write_text(json.dumps(owner))
    return lease


def test_a_lease_dated_in_the_future_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    lease = _lease(tmp_path, {"host": "node-elsewhere", "pid": 1})
    os.utime(lease, (time.time() + leases_module.STALE_SECONDS / 2,) * 2)  # a clock a little ahead: still held
    assert holder(tmp_path, "r0") is not None
    os.utime(lease, (time.time() + 2 * leases_module.STALE_SECONDS,) * 2)  # ahead by more than clocks may differ
    with pytest.warns(leases_module.LeaseWarning, match=r"dated \d+ s in the future, held by no process"):
        assert holder(tmp_path, "r0") is None


def test_a_lease_naming_a_live_process_that_did_not_take_it_is_taken_over(tmp_path: Path) -> None:
    """Its process ended and the pid went to another one, or the file is hand-made: the pid alone is not
    trusted, the process's start time is (while the process that took it lives, the lease is held)."""
    me = {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": leases_module.process_started(os.getpid())}
    assert me["pid_started"] is not None  # Linux: /proc
    lease = _lease(tmp_path, me)
    assert holder(tmp_path, "r0") == me
    for impostor in ({**me, "pid_started": "1"}, {"host": me["host"], "pid": os.getppid()}):
        lease.write_text(json.dumps(impostor))
        with pytest.warns(leases_module.LeaseWarning, match="not the process that wrote it"):
            assert holder(tmp_path, "r0") is None


def test_a_lease_of_a_killed_process_not_yet_reaped_is_free_at_once(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = leases_module.process_started(child.pid)
        _lease(tmp_path, {"host": socket.gethostname(), "pid": child.pid, "pid_started": started})
        assert holder(tmp_path, "r0") is not None
        child.kill()  # a zombie until waited for: kill(pid, 0) still finds it
        deadline = time.time() + 30
        while leases_module.alive(child.pid) and time.time() < deadline:
            time.sleep(0.01)
        os.kill(child.pid, 0)  # not reaped yet
        assert holder(tmp_path, "r0") is None
    finally:
        child.kill()
        child.wait()


def test_processes_present_in_a_directory_see_each_other_not_themselves(tmp_path: Path) -> None:
    here = socket.gethostname()
    with Leases(
        tmp_path, {"host": here, "pid": os.getpid(), "pid_started": leases_module.process_started(os.getpid())}
    ) as me:
        assert me.others() == []
        (tmp_path / "leases" / f"{here}-{os.getppid()}.process").write_text(
            json.dumps({"host": here, "pid": 999_999_999})
        )
        assert me.others() == []  # a dead process's presence: not counted
        other = {"host": "node-elsewhere", "pid": 7}
        (tmp_path / "leases" / "node-elsewhere-7.process").write_text(json.dumps(other))
        assert me.others() == [other]
    assert [p.name for p in (tmp_path / "leases").iterdir()] == ["node-elsewhere-7.process"]  # the dead one's went
