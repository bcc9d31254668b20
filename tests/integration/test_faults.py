"""Signals and faults leave a resumable experiment: SIGTERM stops like Ctrl-C (exit 143), worker processes
die with their parent (even on kill -9) and never write after it, a kill between writes leaves no stale
temporary file after the resume, and a full disk is one line with exit status 1."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import groklab
from groklab.cli import main
from groklab.engine.checkpoint import read_header
from groklab.store.writer import ExperimentStore

from .waiting import DEADLINE, wait_for

SPEC = {
    "name": "faults",
    "task": {"name": "modular", "modulus": 11, "train_fraction": 0.5},
    "model": {"name": "mlp", "width": 16, "activation": "quadratic", "bias": False},
    "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 1.0},
    "train": {"steps": 20, "eval_every": 10, "loss": "mse"},
    "seeds": 3,
    "sweep": {"train.steps": [20, 3000]},  # three runs finish at once, three train on for a few seconds
}


def _start(path: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "groklab", "run", str(path), "--out", str(out), "--quiet", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_runs(out: Path, count: int, process: subprocess.Popen[str]) -> None:
    wait_for(lambda: len(list(out.glob("runs/*/result.json"))) >= count, process)


def _workers(pid: int, count: int | None = None) -> list[int]:
    """The multiprocessing workers whose parent is `pid` (Linux /proc; not the resource tracker); with `count`,
    [] unless there are that many."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            command = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid) and b"spawn_main" in command:
            found.append(int(status.parent.name))
    return found if count is None or len(found) == count else []


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    process = _start(spec, out, "--workers", "1")
    _wait_for_runs(out, 3, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == 143, stderr
    assert stderr.startswith("terminated: ") and stderr.count("\n") == 1 and "Traceback" not in stderr
    partial = groklab.load(out)
    assert partial.meta["state"] == "interrupted" and len(partial.runs) == 3
    kept = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    (checkpoint,) = out.glob("checkpoints/*.pt")  # the unfinished stack, saved at a step boundary before exiting
    saved = read_header(checkpoint)
    assert saved.step > 20 and len(saved.ids) == 3
    resumed = _start(spec, out, "--workers", "1")  # the same command resumes it
    _, stderr = resumed.communicate(timeout=DEADLINE)
    assert resumed.returncode == 0, stderr
    assert len(groklab.load(out).runs) == 6 and groklab.load(out).meta["state"] == "finished"
    assert kept == {p: p.stat().st_mtime_ns for p in kept}  # the finished runs were kept as they were
    # The interrupted runs resumed from their checkpoint: the same as an uninterrupted experiment, bit for bit.
    whole = groklab.run(yaml.safe_load(spec.read_text()), out=tmp_path / "whole", progress=False)
    resumed_metrics = groklab.load(out).metrics.sort_values(["run_id", "step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(resumed_metrics, whole.metrics.sort_values(["run_id", "step"]).reset_index(drop=True))
    for run_id in whole.runs["run_id"]:
        assert all(torch.equal(a, b) for a, b in zip(groklab.load(out).weights(run_id).values(),
                                                       whole.weights(run_id).values()))  # fmt: skip
    assert not list(out.glob("checkpoints/*.pt"))  # removed with their finished stacks


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_their_parent_even_on_kill_9(spec: Path, tmp_path: Path) -> None:
    two_stacks = tmp_path / "two-stacks.yaml"  # a swept width makes two stacks: one per worker
    two_stacks.write_text(yaml.safe_dump(SPEC | {"seeds": 1, "sweep": {"model.width": [16, 17]}, "train": {
        **SPEC["train"], "steps": 1_000_000, "checkpoint_every": 100}}))  # fmt: skip
    out = tmp_path / "exp"
    process = _start(two_stacks, out, "--workers", "2")
    workers = wait_for(lambda: _workers(process.pid, count=2), process)
    wait_for(lambda: len(list(out.glob("runs/*/progress.json"))) == 2, process)  # both are training
    process.kill()  # SIGKILL: the parent cannot clean up
    process.communicate(timeout=DEADLINE)
    wait_for(lambda: not [pid for pid in workers if "Z" not in _state(pid)])  # they die with their parent
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    time.sleep(1.0)
    assert written == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}  # nothing writes after it


def test_sigterm_to_the_whole_process_group_with_workers(spec: Path, tmp_path: Path) -> None:
    """What SLURM's scancel and `timeout` do: every process of the group gets SIGTERM."""
    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "groklab", "run", str(spec), "--out", str(out), "--quiet", "--workers", "2",
           "--sweep", "model.width=16,17"]  # fmt: skip
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_runs(out, 3, process)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == 143, stderr
    assert stderr.startswith("terminated: ") and stderr.count("\n") == 1, stderr
    assert groklab.load(out).meta["state"] == "interrupted"


def test_a_damaged_checkpoint_is_a_warning_and_its_runs_start_again(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    process = _start(spec, out, "--workers", "1")
    _wait_for_runs(out, 3, process)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=DEADLINE)
    (checkpoint,) = out.glob("checkpoints/*.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated
    with pytest.warns(UserWarning, match="cannot be read.*start again from step 0"):
        resumed = groklab.run(yaml.safe_load(spec.read_text()), out=out, progress=False)
    # Trained again from step 0 (in a stack of their own: equal to the uninterrupted runs up to float32
    # rounding, which stacking changes), and the damaged file is gone.
    assert len(resumed.runs) == 6 and all(resumed.runs["steps"] == resumed.runs["train.steps"])
    assert not list(out.glob("checkpoints/*.pt"))


def _state(pid: int) -> str:
    try:
        return next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State"))
    except (OSError, StopIteration):
        return "Z"


def test_a_kill_between_writes_leaves_no_stale_temporary_after_the_resume(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    groklab.run(SPEC | {"sweep": {}, "seeds": 1}, out=out, progress=False)
    stale = [out / ".meta.json.k1ll3d", out / "runs" / "run-0000" / ".weights.safetensors.k1ll3d"]
    for path in stale:  # what a kill between a temporary file's creation and its rename leaves
        path.write_bytes(b"half")
    groklab.run(SPEC | {"sweep": {}, "seeds": 1}, out=out, progress=False)  # the same command: resume
    assert not any(path.exists() for path in stale)
    assert len(groklab.load(out).runs) == 1


def test_a_full_disk_is_one_line_exit_1_and_resumable(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exp"
    original = ExperimentStore.write_run
    written = []

    def full_after_one(self: ExperimentStore, result: object) -> None:
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.root / "runs"))
        original(self, result)  # type: ignore[arg-type]
        written.append(result)

    monkeypatch.setattr(ExperimentStore, "write_run", full_after_one)
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(SPEC | {"sweep": {}, "seeds": 2}))
    argv, sys.argv = sys.argv, ["groklab", "run", str(small), "--out", str(out), "--quiet", "--workers", "1"]
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
    finally:
        sys.argv = argv
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.startswith("error: No space left on device") and err.count("\n") == 1
    assert groklab.load(out).meta["state"] == "interrupted" and len(groklab.load(out).runs) == 1
    monkeypatch.setattr(ExperimentStore, "write_run", original)
    assert len(groklab.run(yaml.safe_load(small.read_text()), out=out, progress=False).runs) == 2  # resumed


def test_a_worker_process_that_dies_mid_stack_is_replaced_and_its_stack_resumes(spec: Path, tmp_path: Path) -> None:
    """The OOM killer or kill -9 on one worker: as Dask reruns a dead worker's task, a new pool resumes it."""
    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "groklab", "run", str(spec), "--out", str(out), "--quiet", "--workers", "2",
           "--sweep", "model.width=16,17", "--set", "train.checkpoint_every=100"]  # fmt: skip
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: list(out.glob("checkpoints/*.pt")), process)
    workers = _workers(process.pid)
    assert workers and list(out.glob("checkpoints/*.pt"))
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == 0, stderr
    result = groklab.load(out)
    assert len(result.runs) == 12 and not result.progress and result.meta["state"] == "finished"
    whole = groklab.run(yaml.safe_load(spec.read_text()), out=tmp_path / "whole", progress=False, workers=2,
                        sweeps=["model.width=16,17"], sets=["train.checkpoint_every=100"])  # fmt: skip
    order = ["run_id", "step"]
    pd.testing.assert_frame_equal(result.metrics.sort_values(order).reset_index(drop=True),
                                  whole.metrics.sort_values(order).reset_index(drop=True))  # fmt: skip
