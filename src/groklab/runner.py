"""Running an experiment: spec -> validated runs -> plan -> training (in-process or workers) -> store."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import multiprocessing
import os
import platform
import queue as queue_module
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from groklab.config import Experiment, SpecError, expand_runs, resolve_spec
from groklab.data import check_data
from groklab.engine import interrupt
from groklab.engine.loop import train_stack
from groklab.engine.plan import Plan, make_plan
from groklab.engine.result import RunResult
from groklab.expectations import validate_claims
from groklab.measures import selected
from groklab.store import ExperimentResult, ExperimentStore, load


def check_device(device: str) -> str:
    """Validate a device string: cpu, cuda, cuda:N (where available)."""
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError(f"--device {device}: CUDA is not available on this machine; allowed: cpu")
        try:
            torch.device(device)
        except RuntimeError:
            raise SpecError(f"--device {device}: not a device; allowed: cpu, cuda, cuda:N") from None
        return device
    raise SpecError(f"--device {device}: not a device; allowed: cpu, cuda, cuda:N")


def run(
    spec: str | Path | dict[str, Any] | Experiment,
    out: str | Path | None = None,
    device: str = "cpu",
    sets: list[str] | None = None,
    sweeps: list[str] | None = None,
    progress: bool = True,
    workers: int | None = None,
    stack_size: int | None = None,
    quick: bool = False,
    command: str | None = None,
) -> ExperimentResult:
    """Train every run of an experiment and store it; returns the stored experiment.

    Everything is validated before the output directory is created. Re-running the same spec into
    the same directory resumes it: finished runs are kept, the rest are trained. meta.json keeps the
    command line that made it (`command`, as the CLI received it; from Python, the equivalent command)
    and its overrides, as Hydra keeps overrides.yaml.
    """
    # Everything is checked before the directory exists: the spec, its claims and measures, the memory
    # each stack needs, and that every run's data can be made.
    experiment = resolve_spec(spec, sets, sweeps, quick)
    validate_claims(experiment)
    device = check_device(device)
    root = check_out(out, experiment.name)
    runs = expand_runs(experiment)
    for config in runs:  # unknown or inapplicable measures fail here, before anything is written
        selected(config)
    ids = [f"run-{i:04d}" for i in range(len(runs))]
    make_plan(list(zip(ids, runs)), device, workers=workers, stack_size=stack_size)  # refuses what cannot fit
    for task in {json.dumps(c.task.model_dump(mode="json"), sort_keys=True): c.task for c in runs}.values():
        check_data(task)
    store = ExperimentStore.open(root, experiment)
    finished = store.finished_run_ids()
    todo = [(run_id, config) for run_id, config in zip(ids, runs) if run_id not in finished]
    resumed = store.checkpointed_stacks(dict(zip(ids, runs)), finished)  # stacks that stopped half-way
    in_resumed = {run_id for stack in resumed for run_id, _ in stack}
    rest = [(run_id, config) for run_id, config in todo if run_id not in in_resumed]
    plan = make_plan(rest, device, workers=workers, stack_size=stack_size, first=resumed) if todo else None
    earlier = store.read_meta()  # a resumed experiment's time is the sum of its sessions
    spent_before = float(earlier.get("wall_time_s", 0.0)) if finished else 0.0
    overrides = {"set": sets or [], "sweep": sweeps or [], "quick": quick, "device": device, "workers": workers}
    if command is None:
        command = command_line(spec, out, overrides)
    meta = environment(device) | {"n_runs": len(runs), "resumed_runs": len(finished), "state": "running"}
    meta |= {"command": command, "overrides": overrides}
    meta |= {
        "plan": plan.describe() if plan else None,
        "started": earlier.get("started", _now()) if finished else _now(),
    }
    store.write_meta(meta)
    started = time.perf_counter()
    try:
        if plan is not None:
            with interrupt.at_step_boundaries():
                _execute(plan, store, progress)
        meta["state"] = "finished"
    except BaseException:
        meta["state"] = "interrupted"
        raise
    finally:
        meta |= {"finished": _now(), "wall_time_s": round(spent_before + time.perf_counter() - started, 3)}
        store.write_meta(meta)
    return load(root)


def command_line(spec: object, out: str | Path | None, overrides: dict[str, Any]) -> str:
    """The `groklab run` command equivalent to a Python call (a spec given as data shows as SPEC)."""
    words = ["groklab", "run", str(spec) if isinstance(spec, (str, Path)) else "SPEC"]
    words += [w for value in overrides["set"] for w in ("--set", value)]
    words += [w for value in overrides["sweep"] for w in ("--sweep", value)]
    words += ["--quick"] if overrides["quick"] else []
    words += ["--device", overrides["device"]] if overrides["device"] != "cpu" else []
    words += ["--workers", str(overrides["workers"])] if overrides["workers"] else []
    words += ["--out", str(out)] if out is not None else []
    return shlex.join(words)


def check_out(out: str | Path | None, name: str) -> Path:
    """The experiment directory: --out, or runs/NAME-TIME; an empty --out is refused."""
    if out is not None and not str(out).strip():
        raise SpecError("--out: an empty path; give a directory for the experiment (default runs/NAME-TIME)")
    root = Path(out) if out is not None else default_out(name)
    longest = max(root.parts or ("",), key=lambda part: len(os.fsencode(part)))
    if len(os.fsencode(longest)) > 255:  # NAME_MAX of Linux and macOS file systems
        raise SpecError(f"--out: a name of {len(os.fsencode(longest))} bytes ({longest[:16]}...); at most 255 each")
    return root


def default_out(name: str) -> Path:
    """runs/<name>-<UTC timestamp> under the working directory."""
    return Path("runs") / f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def environment(device: str) -> dict[str, Any]:
    """Versions and machine facts for meta.json."""
    try:
        root = Path(__file__).resolve().parent
        revision = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        revision = ""
    return {
        "groklab": metadata.version("groklab"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "git_revision": revision or None,
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
    }


class _Progress:
    """tqdm bar over run-steps, with the count of runs memorized and generalized so far."""

    def __init__(self, plan: Plan, enabled: bool) -> None:
        total = sum(c.train.steps for stack in plan.stacks for _, c in stack)
        total_runs = sum(len(stack) for stack in plan.stacks)  # the runs this call trains
        self.bar = tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True, file=sys.stderr)
        self.counts = {"memorized": 0, "generalized": 0, "diverged": 0}
        self.total_runs = total_runs

    def __call__(self, steps: int, events: list[tuple[str, str]]) -> None:
        for _, event in events:
            self.counts[event] += 1
        c = self.counts
        postfix = f"memorized {c['memorized']}/{self.total_runs} generalized {c['generalized']}/{self.total_runs}"
        if c["diverged"]:
            postfix += f" diverged {c['diverged']}"
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(steps)

    def close(self) -> None:
        self.bar.close()


def _execute(plan: Plan, store: ExperimentStore, progress: bool) -> None:
    bar = _Progress(plan, progress)
    try:
        if plan.workers == 1:
            previous = torch.get_num_threads()
            torch.set_num_threads(plan.threads)
            try:
                for stack in plan.stacks:
                    checkpoint = store.checkpoint_path(stack)
                    train_stack(stack, plan.device, store.write_new_run, on_progress=bar, checkpoint=checkpoint)
            finally:
                torch.set_num_threads(previous)
        else:
            _execute_in_workers(plan, store, bar)
    finally:
        bar.close()


_worker_queue: Any = None


def _init_worker(progress_queue: Any, threads: int, parent: int) -> None:
    global _worker_queue
    _worker_queue = progress_queue
    # The parent handles Ctrl-C. SIGTERM (from the parent, or from SLURM to the whole group) makes a worker
    # checkpoint its stack at the next step boundary and stop. If the parent dies (even by kill -9), the
    # kernel kills the workers, so nothing trains or writes into the directory after it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: setattr(interrupt, "requested", signum))
    _die_with_parent(parent)
    torch.set_num_threads(threads)


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG); exit at once if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _train_in_worker(stack: list[Any], device: str, root: str) -> int:
    store = ExperimentStore(Path(root))

    def report(steps: int, events: list[tuple[str, str]]) -> None:
        _worker_queue.put((steps, events))

    checkpoint = store.checkpoint_path(stack)
    results: list[RunResult] = train_stack(stack, device, store.write_new_run, report, checkpoint)
    return len(results)


def _execute_in_workers(plan: Plan, store: ExperimentStore, bar: _Progress) -> None:
    # spawn, never fork: torch's thread pools do not survive a fork.
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    pool = ProcessPoolExecutor(
        plan.workers, context, initializer=_init_worker, initargs=(progress_queue, plan.threads, os.getpid())
    )
    try:
        pending = {pool.submit(_train_in_worker, stack, plan.device, str(store.root)) for stack in plan.stacks}
        while pending:
            if interrupt.requested is not None:  # Ctrl-C or SIGTERM: every worker checkpoints, then all stop
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
                wait(pending, timeout=WORKER_GRACE_SECONDS)
                _drain(progress_queue, bar)
                interrupt.stop_now()
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(progress_queue, bar)
            for future in done:
                future.result()
        _drain(progress_queue, bar)
    except BaseException:
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()  # every file they write is atomic: a kill loses no finished run
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


WORKER_GRACE_SECONDS = 60.0
"""How long interrupted workers get to checkpoint (one step and one save) before they are killed."""


def _drain(progress_queue: Any, bar: _Progress) -> None:
    while True:
        try:
            steps, events = progress_queue.get_nowait()
        except queue_module.Empty:
            return
        bar(steps, events)
