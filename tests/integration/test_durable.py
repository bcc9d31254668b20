"""Durable experiments through the CLI: live progress on disk (summary, plot and report of a running or killed
experiment), a run that raises is marked failed while the others finish, several processes on one --out
train every run exactly once with the results of one process, and a killed process's runs are taken over."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

import groklab
from groklab.config import resolve_spec
from groklab.store.leases import Leases
from groklab.store.writer import ExperimentStore, spec_text

from .waiting import DEADLINE, wait_for

SPEC: dict[str, Any] = {
    "name": "durable",
    "task": {"name": "modular", "modulus": 11, "train_fraction": 0.5},
    "model": {"name": "mlp", "width": 16, "activation": "quadratic", "bias": False},
    "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 1.0},
    "train": {"steps": 100, "eval_every": 20, "loss": "mse", "checkpoint_every": 50},
    "seeds": 2,
    "sweep": {"model.width": [16, 24]},  # two stacks of two runs
}


def _spec(tmp_path: Path, **train: Any) -> Path:
    path = tmp_path / "durable.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "train": {**SPEC["train"], **train}}))
    return path


def _groklab(*args: str, env: dict[str, str] | None = None, wait: bool = True) -> Any:
    cmd = [sys.executable, "-m", "groklab", *args]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    if not wait:
        return process
    try:
        stdout, stderr = process.communicate(timeout=DEADLINE)
    finally:
        process.kill()  # (a no-op once it has exited) never left training after a failed test
        process.wait()
    return process.returncode, stdout, stderr


def _open(out: Path, spec: Path) -> None:
    """Create (or reopen) an experiment directory as a `groklab run` of `spec` would, from this process."""
    with Leases(out, {"pid": os.getpid()}) as leases:
        ExperimentStore.open(out, resolve_spec(str(spec)), leases)


def _wait_for_progress(out: Path, runs: int, step: int, process: subprocess.Popen[str] | None = None) -> None:
    """Until `runs` runs have progress on disk from step `step` on."""

    def progressed() -> bool:
        rows = []
        for path in out.glob("runs/*/progress.json"):
            try:
                rows.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return sum(row["steps"] >= step for row in rows) >= runs

    wait_for(progressed, process)


def _summary(out: Path) -> dict[str, dict[str, Any]]:
    code, stdout, stderr = _groklab("summary", str(out), "--json")
    assert code == 0, stderr
    return {row["run_id"]: row for row in json.loads(stdout)}


def _same_results(a: Path, b: Path) -> None:
    first, second = groklab.load(a), groklab.load(b)
    assert sorted(first.runs["run_id"]) == sorted(second.runs["run_id"])
    order = ["run_id", "step"]
    pd.testing.assert_frame_equal(first.metrics.sort_values(order).reset_index(drop=True),
                                  second.metrics.sort_values(order).reset_index(drop=True))  # fmt: skip
    for run_id in first.runs["run_id"]:
        assert all(torch.equal(v, second.weights(run_id)[k]) for k, v in first.weights(run_id).items())


def test_a_running_then_killed_experiment_shows_every_run_and_partial_curves(tmp_path: Path) -> None:
    spec, out = _spec(tmp_path, steps=1_000_000, eval_every=100, checkpoint_every=500), tmp_path / "out"
    process = _groklab("run", str(spec), "--out", str(out), "--quiet", wait=False)
    try:
        _wait_for_progress(out, runs=2, step=500, process=process)
        running = _summary(out)
        assert {row["status"] for row in running.values()} == {"running"} and len(running) == 2
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=DEADLINE)
    killed = _summary(out)
    assert sorted(killed) == ["run-0000", "run-0001"]
    for row in killed.values():  # the last checkpoint's step and the latest accuracies, owner recorded
        assert row["status"] == "interrupted" and row["steps"] >= 500 and 0 <= row["final"]["train_acc"] <= 1
        assert row["trained_by"]["pid"] == process.pid and row["trained_by"]["device"] == "cpu"
    code, table, _ = _groklab("summary", str(out))
    assert code == 0 and "interrupted" in table
    assert "(0 of 4 runs finished, 2 interrupted, 2 not started)" in table
    curves = groklab.plot(out, ["curves"])["curves"]
    assert "partial" in curves._suptitle.get_text()  # type: ignore[union-attr]
    assert sum(len(line.get_xdata()) > 1 for line in curves.axes[1].lines) == 4  # train and test, two runs
    code, _, stderr = _groklab("report", str(out))
    assert code == 0, stderr
    page = (out / "report.html").read_text()
    assert "Unfinished runs" in page and "2 interrupted (partial results)" in page


@pytest.mark.parametrize("workers", ["1", "2"], ids=["in-process", "worker-processes"])
def test_a_run_that_raises_is_marked_failed_while_the_others_finish(tmp_path: Path, workers: str) -> None:
    spec, out = _spec(tmp_path), tmp_path / "out"
    fault = {"GROKLAB_FAULT": "run-0002@40"}
    code, _, stderr = _groklab("run", str(spec), "--out", str(out), "--quiet", "--workers", workers, env=fault)
    assert code == 1 and len(stderr.strip().splitlines()) == 1 and "2 run(s) failed" in stderr, stderr
    result = groklab.load(out)
    assert sorted(result.runs["run_id"]) == ["run-0000", "run-0001"]  # the other stack finished
    failed = {row["run_id"]: row for row in result.progress}
    assert sorted(failed) == ["run-0002", "run-0003"]  # the stack of run-0002
    assert all(row["status"] == "failed" and "injected fault" in row["error"] for row in failed.values())
    code, table, _ = _groklab("summary", str(out))
    assert "run-0002 failed: RuntimeError: injected fault" in table
    code, _, stderr = _groklab("run", str(spec), "--out", str(out), "--quiet")  # the same command retries them
    assert code == 0, stderr
    again = groklab.load(out)
    assert len(again.runs) == 4 and not again.progress and set(again.runs["status"]) == {"completed"}


def test_processes_sharing_a_directory_train_every_run_once_with_one_process_results(tmp_path: Path) -> None:
    spec = _spec(tmp_path, steps=800)
    spec.write_text(yaml.safe_dump({**yaml.safe_load(spec.read_text()), "sweep": {"model.width": [12, 16, 20, 24]}}))
    out = tmp_path / "shared"
    processes = [_groklab("run", str(spec), "--out", str(out), "--quiet", wait=False) for _ in range(3)]
    for process in processes:
        _, stderr = process.communicate(timeout=DEADLINE)
        assert process.returncode == 0, stderr
    sessions = [json.loads(p.read_text()) for p in (out / "sessions").glob("*.json")]
    trained = [run_id for session in sessions for run_id in session["trained"]]
    assert len(sessions) == 3 and sorted(trained) == [f"run-{i:04d}" for i in range(8)]  # each run once
    assert sum(bool(session["trained"]) for session in sessions) >= 2  # the work was really split
    for session in sessions:
        for run_id in session["trained"]:
            assert groklab.load(out).rows[int(run_id[-4:])]["trained_by"]["pid"] == session["pid"]
    assert not list((out / "leases").iterdir()) and not list(out.glob("runs/*/progress.*"))
    code, _, stderr = _groklab("run", str(spec), "--out", str(tmp_path / "alone"), "--quiet")
    assert code == 0, stderr
    _same_results(out, tmp_path / "alone")


def test_two_specs_started_together_on_one_directory_one_trains_the_other_is_refused(tmp_path: Path) -> None:
    """The directory is the first spec's from its first write, however close the starts (3 trials): the other
    process exits 2 with one line and nothing of the first is overwritten or deleted."""
    for trial in range(3):
        out, specs = tmp_path / f"out-{trial}", []
        for lr in (0.01, 0.02):
            specs.append(tmp_path / f"lr-{lr}.yaml")
            specs[-1].write_text(yaml.safe_dump({**SPEC, "optimizer": {**SPEC["optimizer"], "lr": lr}, "sweep": {}}))
        processes = [_groklab("run", str(spec), "--out", str(out), "--quiet", wait=False) for spec in specs]
        outcomes = [(process.communicate(timeout=DEADLINE)[1], process.returncode)[::-1] for process in processes]
        assert sorted(code for code, _ in outcomes) == [0, 2], outcomes
        winner = [code for code, _ in outcomes].index(0)
        refusal = outcomes[1 - winner][1]
        assert refusal.count("\n") == 1 and "another" in refusal, refusal
        assert (out / "experiment.yaml").read_text() == spec_text(resolve_spec(str(specs[winner])))
        assert {row["params"]["optimizer.lr"] for row in groklab.load(out).rows} == {(0.01, 0.02)[winner]}


def test_another_spec_is_refused_while_a_process_trains_and_nothing_of_it_is_touched(tmp_path: Path) -> None:
    spec, out = _spec(tmp_path, steps=1_000_000, checkpoint_every=100), tmp_path / "out"
    spec.write_text(yaml.safe_dump({**yaml.safe_load(spec.read_text()), "sweep": {}}))
    first = _groklab("run", str(spec), "--out", str(out), "--quiet", wait=False)
    wait_for(lambda: list(out.glob("checkpoints/*.pt")), first)  # training, no run finished yet
    before = {path: path.read_bytes() for path in [out / "experiment.yaml", *out.glob("checkpoints/*.pt")]}
    other = tmp_path / "other.yaml"
    other.write_text(spec.read_text().replace("lr: 0.01", "lr: 0.02"))
    code, _, stderr = _groklab("run", str(other), "--out", str(out), "--quiet")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "another process" in stderr and f"pid {first.pid}" in stderr, stderr
    assert (
        all(path.is_file() for path in before)
        and (out / "experiment.yaml").read_bytes() == before[out / "experiment.yaml"]
    )
    first.kill()
    first.wait()
    # Once no process is present and no run finished, a corrected command may take the directory over.
    code, _, stderr = _groklab("run", str(other), "--out", str(out), "--quiet", "--set", "train.steps=40")
    assert code == 0, stderr
    assert {row["params"]["optimizer.lr"] for row in groklab.load(out).rows} == {0.02}


def test_a_killed_process_runs_are_taken_over_from_its_checkpoint(tmp_path: Path) -> None:
    spec, out = _spec(tmp_path, steps=8000, checkpoint_every=200), tmp_path / "out"
    spec.write_text(yaml.safe_dump({**yaml.safe_load(spec.read_text()), "sweep": {}}))  # one stack of two runs
    first = _groklab("run", str(spec), "--out", str(out), "--quiet", wait=False)
    try:
        _wait_for_progress(out, runs=2, step=400, process=first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=DEADLINE)
    assert list(out.glob("leases/*")) and list(out.glob("checkpoints/*.pt"))  # a dead holder's leases remain
    # On the same host a dead holder is seen at once (its pid is gone), not after STALE_SECONDS (a day here).
    code, _, stderr = _groklab("run", str(spec), "--out", str(out), "--quiet", env={"GROKLAB_STALE_SECONDS": "86400"})
    assert code == 0, stderr
    sessions = [json.loads(p.read_text()) for p in (out / "sessions").glob("*.json")]
    assert [sorted(s["trained"]) for s in sessions] == [["run-0000", "run-0001"]]  # the killed one left none
    code, _, stderr = _groklab("run", str(spec), "--out", str(tmp_path / "alone"), "--quiet")
    assert code == 0, stderr
    _same_results(out, tmp_path / "alone")  # resumed from the killed process's checkpoint, bit for bit


def test_a_process_waits_for_a_live_holder_and_takes_over_when_its_leases_go_stale(tmp_path: Path) -> None:
    spec, out = _spec(tmp_path, steps=300), tmp_path / "out"
    spec.write_text(yaml.safe_dump({**yaml.safe_load(spec.read_text()), "sweep": {}}))
    _open(out, spec)
    # A lease from another machine (its process cannot be checked from here), refreshed until 2 s ago.
    (out / "leases" / "run-0000.0").write_text(json.dumps({"host": "node-elsewhere", "pid": 1}))
    started = time.time()
    code, _, stderr = _groklab("run", str(spec), "--out", str(out), "--quiet", env={"GROKLAB_STALE_SECONDS": "2"})
    assert code == 0, stderr
    assert time.time() - started >= 1.5  # it waited for the lease to go stale, then took the stack over
    assert len(groklab.load(out).runs) == 2 and not list((out / "leases").iterdir())


def test_a_directory_another_process_is_creating_is_joined_not_refused(tmp_path: Path) -> None:
    """Array tasks start together: one may see the other's runs/ before its experiment.yaml exists."""
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    (out / ".experiment.yaml.node-1.4242.abcd").write_text("half")
    _open(out, _spec(tmp_path))
    assert (out / "experiment.yaml").is_file()
    (out / "notes.txt").write_text("mine")  # anything else is still refused
    other = tmp_path / "other"
    (other / "runs").mkdir(parents=True)
    (other / "notes.txt").write_text("mine")
    with pytest.raises(groklab.SpecError, match="exists and is not a groklab experiment"):
        _open(other, _spec(tmp_path))


def _a_run_to_train_again(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A finished stack of two runs with run-0001 removed: (spec, directory, where run-0001's lease goes)."""
    spec, out = _spec(tmp_path), tmp_path / "out"
    spec.write_text(yaml.safe_dump({**yaml.safe_load(spec.read_text()), "sweep": {}}))  # one stack of two runs
    code, _, stderr = _groklab("run", str(spec), "--out", str(out), "--quiet")
    assert code == 0, stderr
    shutil.rmtree(out / "runs" / "run-0001")
    return spec, out, out / "leases" / "run-0001.0"


@pytest.mark.parametrize(("content", "age"), [("", 60), ("{not json", 60), ("[5]", 60), ("", 0)],
                         ids=["empty", "garbage", "not-a-lease", "empty-just-now"])  # fmt: skip
def test_a_lease_file_that_is_no_process_s_is_taken_over_never_skipped(tmp_path: Path, content: str, age: int) -> None:
    """What a full disk leaves (the exclusive create succeeded, the write failed): its run is trained, with a
    one-line warning, not skipped with exit 0 (the run-0001 of a stack whose run-0000 is on disk). One written
    just now may be a process's that is about to write it: the command says it waits, then takes it over."""
    spec, out, lease = _a_run_to_train_again(tmp_path)
    lease.write_text(content)
    past = time.time() - age  # a minute ago: no process is still writing it
    os.utime(lease, (past, past))
    code, _, stderr = _groklab("run", str(spec), "--out", str(out), "--quiet")
    assert code == 0, stderr
    assert sorted(groklab.load(out).runs["run_id"]) == ["run-0000", "run-0001"]  # trained, not skipped
    said = ["waiting for run-0001: leased by a process being started (taken over if it dies)"] * (age == 0)
    assert stderr.strip().splitlines() == [*said, f"warning: {lease}: an empty or unreadable lease, held by no "
                                           "process; taken over"]  # fmt: skip


@pytest.mark.parametrize("kind", ["dated in the future", "a live process that did not take it"])
def test_a_lease_no_live_process_holds_is_judged_and_taken_over_at_once(tmp_path: Path, kind: str) -> None:
    """Neither waits for the lease to go stale (a day here): a lease dated ahead of every clock, or naming a live
    process of this machine (this test's) with another start time, as a reused pid does."""
    spec, out, lease = _a_run_to_train_again(tmp_path)
    if kind == "dated in the future":
        lease.write_text(json.dumps({"host": "node-elsewhere", "pid": 1}))
        os.utime(lease, (time.time() + 10 * 86400,) * 2)
        says = "s in the future, held by no process; taken over"
    else:
        lease.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "pid_started": "1"}))
        says = f"names process {os.getpid()}, which is not the process that wrote it"
    code, _, stderr = _groklab("run", str(spec), "--out", str(out), "--quiet", env={"GROKLAB_STALE_SECONDS": "86400"})
    assert code == 0, stderr
    assert sorted(groklab.load(out).runs["run_id"]) == ["run-0000", "run-0001"]
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"warning: {lease}: ") and says in line, line


def test_a_damaged_checkpoint_is_one_warning_line_on_the_command_line(tmp_path: Path) -> None:
    spec, out = _spec(tmp_path), tmp_path / "out"
    spec.write_text(yaml.safe_dump({**yaml.safe_load(spec.read_text()), "sweep": {}}))  # one stack of two runs
    assert _groklab("run", str(spec), "--out", str(out), "--quiet")[0] == 0
    shutil.rmtree(out / "runs" / "run-0001")
    (out / "checkpoints").mkdir(exist_ok=True)
    (out / "checkpoints" / "run-0000.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    code, _, stderr = _groklab("run", str(spec), "--out", str(out), "--quiet")
    assert code == 0 and len(groklab.load(out).runs) == 2
    assert stderr.strip().splitlines() == [f"warning: {out / 'checkpoints' / 'run-0000.pt'}: cannot be read (not a "
                                           "groklab checkpoint, or one of an older format); its runs start again "
                                           "from step 0"]  # fmt: skip


@pytest.mark.parametrize(
    ("link", "command"),
    [
        ("sessions", ["run"]),
        ("leases", ["run"]),
        ("checkpoints", ["run"]),
        ("logs", ["run", "--log", "tensorboard"]),
        ("runs/run-0000/weights", ["run"]),
        ("figures", ["plot"]),
        ("recomputed", ["measures", "--recompute", "weight_norms"]),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value),
)
def test_nothing_is_written_through_a_link(tmp_path: Path, link: str, command: list[str]) -> None:
    """Every directory groklab writes into under --out, made a symbolic link to elsewhere, is refused with one line
    (exit 2) before anything is written, and nothing lands where the link points."""
    spec, out, elsewhere = _spec(tmp_path), tmp_path / "out", tmp_path / "elsewhere"
    data = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**data, "sweep": {}, "measures": {"snapshot_steps": [0, 100]}}))
    assert _groklab("run", str(spec), "--out", str(out), "--quiet")[0] == 0
    shutil.rmtree(out / "runs" / "run-0001")  # a run left to train, for the commands that train
    elsewhere.mkdir()
    target = out / link
    shutil.rmtree(target, ignore_errors=True)
    target.symlink_to(elsewhere, target_is_directory=True)
    verb, *options = command
    where = [str(spec), "--out", str(out), "--quiet"] if verb == "run" else [str(out)]
    code, _, stderr = _groklab(verb, *where, *options)
    said = f"--out {out}: {target} is" if verb == "run" else f"{target}: is"  # (run checks every one before it starts)
    expected = [f"error: {said} a symbolic link; groklab writes only inside --out"]
    assert code == 2 and stderr.strip().splitlines() == expected, stderr
    assert list(elsewhere.iterdir()) == []
