"""A real Dask cluster on 127.0.0.1 (`dask scheduler` and two `dask worker --nthreads 1` processes): a sweep
through it gives exactly the local results, kill -9 of a worker mid-stack still finishes every run once
(resumed from the stack's checkpoint), and an unreachable scheduler is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import groklab
from groklab.engine.checkpoint import load as load_checkpoint

from .test_durable import SPEC, _same_results, _wait_for_progress
from .waiting import DEADLINE, wait_for

pytest.importorskip("distributed")


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A scheduler and two one-thread workers, as `dask scheduler` / `dask worker` start them."""
    from distributed import Client

    bin_dir = Path(sys.executable).parent
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = _spawn(str(bin_dir / "dask"), "scheduler", "--scheduler-file", str(scheduler_file),
                       "--host", "127.0.0.1", "--port", "0", "--no-dashboard")  # fmt: skip
    processes = [scheduler]
    try:
        wait_for(scheduler_file.is_file, scheduler)
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            processes.append(_spawn(str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard"))
        with Client(address, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=DEADLINE)
            pids = client.run(os.getpid)  # the worker processes (children of their nannies)
        yield {"address": address, "worker_pids": set(pids.values())}
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _spec(tmp_path: Path, **train: Any) -> Path:
    path = tmp_path / "durable.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "train": {**SPEC["train"], **train}}))
    return path


def _run(*args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "groklab", "run", *args, "--quiet"]
    # A shell running this suite in the background hands its children SIGINT ignored (and Python then installs no
    # KeyboardInterrupt handler): give the client the default, as a terminal's Ctrl-C has it (as test_cli does).
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


def test_a_sweep_through_a_dask_cluster_gives_the_local_results(cluster: dict[str, Any], tmp_path: Path) -> None:
    spec = _spec(tmp_path, steps=400)
    remote = _run(str(spec), "--out", str(tmp_path / "remote"), "--scheduler", cluster["address"])
    local = _run(str(spec), "--out", str(tmp_path / "local"))
    for process in (remote, local):
        _, stderr = process.communicate(timeout=DEADLINE)
        assert process.returncode == 0, stderr
    _same_results(tmp_path / "remote", tmp_path / "local")
    trained_by = {row["trained_by"]["pid"] for row in groklab.load(tmp_path / "remote").rows}
    assert trained_by <= cluster["worker_pids"] and remote.pid not in trained_by  # trained on the workers
    assert groklab.load(tmp_path / "remote").meta["overrides"]["scheduler"] == cluster["address"]


def test_a_module_beside_its_spec_trains_on_the_workers(cluster: dict[str, Any], tmp_path: Path) -> None:
    """The workers run elsewhere (their own working directory and sys.path) but share the filesystem: the spec's
    folder travels with the job, so they import the factory the spec names from beside it."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "my_dask_models.py").write_text(
        "from torch import nn\n\n\ndef make(p):\n"
        "    return nn.Sequential(nn.Embedding(p, 8), nn.Flatten(), nn.Linear(16, p))\n"
    )
    spec = {"name": "mine", "task": {"name": "modular", "modulus": 11}, "seeds": 2,
            "model": {"name": "module", "factory": "my_dask_models:make", "kwargs": {"p": 11}},
            "train": {"steps": 20, "eval_every": 10}, "sweep": {"optimizer.lr": [0.001, 0.01]}}  # fmt: skip
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    remote = _run(str(folder / "spec.yaml"), "--out", str(tmp_path / "remote"), "--scheduler", cluster["address"])
    _, stderr = remote.communicate(timeout=DEADLINE)
    assert remote.returncode == 0, stderr
    rows = groklab.load(tmp_path / "remote").rows
    assert len(rows) == 4 and {row["status"] for row in rows} == {"completed"}
    assert {row["trained_by"]["pid"] for row in rows} <= cluster["worker_pids"]


def test_killing_a_worker_mid_stack_still_finishes_every_run_once(cluster: dict[str, Any], tmp_path: Path) -> None:
    spec, out = _spec(tmp_path, steps=6000, checkpoint_every=200), tmp_path / "remote"
    client = _run(str(spec), "--out", str(out), "--scheduler", cluster["address"])
    _wait_for_progress(out, runs=1, step=400, process=client)
    victim = next(json.loads(p.read_text())["trained_by"]["pid"] for p in out.glob("runs/*/progress.json"))
    assert victim in cluster["worker_pids"]
    os.kill(victim, signal.SIGKILL)
    _, stderr = client.communicate(timeout=DEADLINE)
    assert client.returncode == 0, stderr
    result = groklab.load(out)
    assert len(result.runs) == 4 and not result.progress
    assert victim not in {row["trained_by"]["pid"] for row in result.rows}  # its stack finished elsewhere
    (session,) = [json.loads(p.read_text()) for p in (out / "sessions").glob("*.json")]
    assert sorted(session["trained"]) == [f"run-{i:04d}" for i in range(4)]
    local = _run(str(spec), "--out", str(tmp_path / "local"))
    _, stderr = local.communicate(timeout=DEADLINE)
    assert local.returncode == 0, stderr
    _same_results(out, tmp_path / "local")  # resumed from the checkpoint: bit for bit the uninterrupted runs


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "localhost", "tcp://"])
def test_an_unreachable_or_malformed_scheduler_is_one_line_exit_2_nothing_written(tmp_path: Path, address: str) -> None:
    out = tmp_path / "never"
    process = _run(str(_spec(tmp_path)), "--out", str(out), "--scheduler", address)
    _, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == 2 and stderr.startswith(f"error: --scheduler {address}: "), stderr
    assert stderr.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize("answer", [None, b"HTTP/1.0 200 OK\r\n\r\nhello\n"], ids=["silent", "junk"])
def test_a_port_that_never_speaks_dask_is_one_line_in_bounded_time(tmp_path: Path, answer: bytes | None) -> None:
    """A server that accepts and never answers (or answers junk: the dashboard's port by mistake) hung for good."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)
            if answer:
                connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    out, address = tmp_path / "never", f"tcp://127.0.0.1:{server.getsockname()[1]}"
    started = time.monotonic()
    try:
        process = _run(str(_spec(tmp_path)), "--out", str(out), "--scheduler", address)
        try:
            _, stderr = process.communicate(timeout=DEADLINE)
        finally:
            process.kill()
    finally:
        server.close()
        for connection in accepted:
            connection.close()
    assert time.monotonic() - started < 120  # the connection's 10 s and the rest of the command, on a busy machine
    assert process.returncode == 2 and stderr.strip().splitlines() == [
        f"error: --scheduler {address}: no Dask scheduler answered within 10 s; start one with `dask scheduler` and "
        "give the address it prints"], stderr  # fmt: skip
    assert not out.exists()


def test_ctrl_c_on_the_client_checkpoints_the_remote_stacks_and_the_same_command_resumes(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    # Long enough that the stop lands before the stacks end, on a busy machine too (~15 s of training when quiet).
    spec, out = _spec(tmp_path, steps=12000, checkpoint_every=100), tmp_path / "remote"
    client = _run(str(spec), "--out", str(out), "--scheduler", cluster["address"])
    _wait_for_progress(out, runs=4, step=100, process=client)  # both stacks are training on the workers
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=DEADLINE)
    assert client.returncode == 130, stderr
    saved = {p.name: load_checkpoint(p) for p in out.glob("checkpoints/*.pt")}
    assert saved and all(c.step > 0 for c in saved.values()), "the workers checkpointed their stacks when told to stop"
    progress = groklab.load(out).progress
    assert len(groklab.load(out).runs) < 4 and {row["status"] for row in progress} == {"interrupted"}
    again = _run(str(spec), "--out", str(out), "--scheduler", cluster["address"])
    _, stderr = again.communicate(timeout=DEADLINE)
    assert again.returncode == 0, stderr
    local = _run(str(spec), "--out", str(tmp_path / "local"))
    _, stderr = local.communicate(timeout=DEADLINE)
    assert local.returncode == 0, stderr
    _same_results(out, tmp_path / "local")
