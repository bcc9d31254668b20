"""Running an experiment: spec -> validated runs -> plan -> leased stacks -> one scheduler (runner/schedule.py)
handing them to a backend: this process or worker processes (runner/local.py), or a Dask cluster
(runner/distributed.py) -> store."""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from groklab.config import (
    ArrayTask,
    Experiment,
    FunctionTask,
    ModuleModel,
    RunConfig,
    Runs,
    SpecError,
    expand_runs,
    resolve_spec,
)
from groklab.data import check_data
from groklab.data.arrays import file_digest
from groklab.engine import interrupt
from groklab.engine.plan import Plan, make_plan
from groklab.engine.torch_optim import check_torch_optimizer
from groklab.expectations import validate_claims
from groklab.factories import FOLDERS, as_path, importable_elsewhere, provenance
from groklab.measures import selected
from groklab.models import check_model
from groklab.plugins import load_plugins
from groklab.runner.distributed import DaskCluster, connect
from groklab.runner.local import InProcess, Job, WorkerPool
from groklab.runner.progress import ProgressBar
from groklab.runner.schedule import Backend, Work, schedule
from groklab.runner.trackers import Callback, check_trackers
from groklab.store import ExperimentResult, load
from groklab.store.checkpoints import Checkpoints
from groklab.store.leases import Leases, check_environment, process_started
from groklab.store.writer import ExperimentStore


def check_device(device: str, here: bool = True) -> str:
    """Validate a device string: cpu, cuda, cuda:N (available on this machine, if it trains `here`)."""
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if here and not torch.cuda.is_available():
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
    threads: int | None = None,
    stack_size: int | None = None,
    quick: bool = False,
    command: str | None = None,
    scheduler: str | None = None,
    callbacks: list[Callback] | None = None,
) -> ExperimentResult:
    """Train every run of an experiment and store it; returns the stored experiment.

    Everything is validated before the output directory is created. Re-running the same spec into
    the same directory resumes it: finished runs are kept, the rest are trained. meta.json keeps the
    command line that made it (`command`, as the CLI received it; from Python, the equivalent command)
    and its overrides, as Hydra keeps overrides.yaml. `scheduler` (tcp://HOST:PORT) trains the stacks on
    that Dask cluster (runner/distributed.py), whose workers share the directory's filesystem. `callbacks`
    hear every evaluation of every run (runner/trackers.py: Evaluation), in the process that trains it. `threads`
    (--threads): at most that many torch threads in all (engine/cores.py: the CPU budget limits it further).
    """
    # Everything is checked before the directory exists: the spec, its claims and measures, the memory
    # each stack needs, and that every run's data can be made.
    load_plugins()  # what installed plugins add (measures, checks) is known before the spec is read
    experiment = resolve_spec(spec, sets, sweeps, quick)
    validate_claims(experiment)
    device = check_device(device, here=scheduler is None)  # with a scheduler, the workers' device
    check_trackers(experiment.log)
    check_environment()
    root = check_out(out, experiment.name)
    runs = expand_runs(experiment)
    for config in runs:  # unknown or inapplicable measures fail here, before anything is written
        selected(config)
    ids = [f"run-{i:04d}" for i in range(len(runs))]
    plan = make_plan(list(zip(ids, runs)), device, workers, stack_size, threads=threads)  # refuses what cannot fit
    for task in {json.dumps(c.task.model_dump(mode="json"), sort_keys=True): c.task for c in runs}.values():
        check_data(task)
    for config in {_model_key(c): c for c in runs}.values():  # a user's module: built and tried on its task
        check_model(config)
    for optimizer in {json.dumps(c.optimizer.model_dump(mode="json")): c.optimizer for c in runs}.values():
        if optimizer.name == "torch":  # a torch.optim class: built with the spec's settings
            check_torch_optimizer(optimizer)
    if plan.workers > 1 or scheduler is not None:
        check_importable(runs)
    client = connect(scheduler) if scheduler is not None else None  # an unreachable one: before anything is written
    leases = Leases(root, owner(device))
    try:
        store = ExperimentStore.open(root, experiment, leases)  # from here on this process is present there
    except SpecError:
        if client is not None:
            client.close()
        raise
    with leases:
        stacks = _stacks_to_train(plan, store, dict(zip(ids, runs)))
        earlier = store.read_meta()  # a resumed experiment's time is the sum of its sessions
        finished = store.finished_run_ids()
        spent_before = float(earlier.get("wall_time_s", 0.0)) if store.resumed else 0.0
        overrides = {"set": sets or [], "sweep": sweeps or [], "quick": quick, "device": device, "workers": workers}
        overrides |= {"threads": threads, "scheduler": scheduler}
        if command is None:
            command = command_line(spec, out, overrides)
        meta = environment(device) | {"n_runs": len(runs), "resumed_runs": len(finished), "state": "running"}
        meta |= {"command": command, "overrides": overrides, "data_files": data_files(runs), "code": code(runs)}
        meta |= {"plan": plan.describe(), "started": earlier.get("started", _now()) if store.resumed else _now()}
        store.write_meta(meta)
        started = time.perf_counter()
        bar = ProgressBar(stacks, progress, finished)
        session = owner(device) | {"command": command, "started": _now(), "state": "running"}
        work = Work(stacks, store, leases, bar)
        # The spec stays in memory: what each stack needs of it travels with the stack, nothing is read back.
        job = Job(root, experiment.name, list(experiment.log), plan.device, list(callbacks or []), list(FOLDERS))
        try:
            with interrupt.at_step_boundaries():
                schedule(work, _backend(plan, job, bar, client))
            session["state"] = meta["state"] = "finished" if not work.failed else "finished with failed runs"
            meta["failed_runs"] = work.failed
            if untrained := work.untrained(ids):  # never silently: the command says which runs it did not train
                session["state"] = meta["state"] = "finished with runs not trained"
                meta["untrained_runs"] = untrained
        except BaseException:
            session["state"] = meta["state"] = "interrupted"
            raise
        finally:
            bar.close()
            meta |= {"finished": _now(), "wall_time_s": round(spent_before + time.perf_counter() - started, 3)}
            store.write_meta(meta)
            session |= {"finished": _now(), "trained": work.trained, "failed": work.failed}
            store.write_session(session)
    return load(root)


def data_files(runs: list[RunConfig]) -> dict[str, str]:
    """Each data file the runs read (task arrays) and its SHA-256 (arrays given in Python: memory:SHA256 and the
    same digest): what the results were trained on."""
    paths = sorted({run.task.path for run in runs if isinstance(run.task, ArrayTask)})
    return {path if path.startswith("memory:") else str(Path(path).resolve()): file_digest(path) for path in paths}


def factories(runs: list[RunConfig]) -> dict[str, str]:
    """Each factory the runs call (your module, your data's function, a torch.optim class) -> the spec key that
    names it."""
    named = {run.model.factory: "model.factory" for run in runs if isinstance(run.model, ModuleModel)}
    named |= {run.task.factory: "task.factory" for run in runs if isinstance(run.task, FunctionTask)}
    classes = {run.optimizer.optimizer_class for run in runs if run.optimizer.optimizer_class is not None}
    return named | {as_path(name): "optimizer.class" for name in classes}


def code(runs: list[RunConfig]) -> list[dict[str, Any]]:
    """Each factory the runs call with its source file and that file's SHA-256: what produced them."""
    return [provenance(path) for path in sorted(factories(runs))]


def check_importable(runs: list[RunConfig]) -> None:
    """SpecError for what worker processes or Dask workers could not have: a factory defined in a notebook, or
    arrays given in Python."""
    for path, key in sorted(factories(runs).items()):
        if not importable_elsewhere(path):
            raise SpecError(
                f"{key}: {path} is defined in this session (a notebook or the interpreter), where worker "
                "processes and Dask workers cannot import it; allowed: a function in a module file, or --workers 1"
            )
    if any(isinstance(run.task, ArrayTask) and run.task.path.startswith("memory:") for run in runs):
        raise SpecError("task: arrays given in Python stay in this process, where worker processes and Dask workers "
                        "cannot read them; allowed: a file (task.path), or --workers 1")  # fmt: skip


def _model_key(config: RunConfig) -> str:
    """Runs with the same model on the same task and dtype: one check of a user's module serves them all."""
    return json.dumps(
        config.model_dump(mode="json", include={"task": True, "model": True, "train": {"dtype"}}), sort_keys=True
    )


def _backend(plan: Plan, job: Job, bar: ProgressBar, client: Any) -> Backend:
    """Where the stacks train: the Dask cluster of --scheduler, else this process or the plan's worker processes."""
    if client is not None:
        return DaskCluster(client, job, bar)
    if plan.workers == 1:
        return InProcess(job, plan.threads, bar)
    return WorkerPool(job, plan.workers, plan.threads, bar)


def _stacks_to_train(plan: Plan, store: ExperimentStore, configs: dict[str, RunConfig]) -> list[Runs]:
    """The plan's stacks, after those that another plan's checkpoints left (resumed as they were saved).

    The plan covers every run of the spec, finished or not, so every process with the same command plans the
    same stacks and lease them whole (store/leases.py). A leased stack resumes from its checkpoint, or
    restarts whole while any of its runs is unfinished (store/checkpoints.py).
    """
    finished = store.finished_run_ids()
    others = Checkpoints(store.root).left_by_other_plans(configs, finished, {runs[0][0] for runs in plan.stacks})
    taken = {run_id for stack in others for run_id, _ in stack}
    planned = [[m for m in stack if m[0] not in taken] for stack in plan.stacks]
    return others + [stack for stack in planned if stack]


def owner(device: str) -> dict[str, Any]:
    """Who trains: this host and process (its pid and when it started: a pid alone is reused), on a device."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_started": process_started(pid), "device": device}


def command_line(spec: object, out: str | Path | None, overrides: dict[str, Any]) -> str:
    """The `groklab run` command equivalent to a Python call (a spec given as data shows as SPEC)."""
    words = ["groklab", "run", str(spec) if isinstance(spec, (str, Path)) else "SPEC"]
    words += [w for value in overrides["set"] for w in ("--set", value)]
    words += [w for value in overrides["sweep"] for w in ("--sweep", value)]
    words += ["--quick"] if overrides["quick"] else []
    words += ["--device", overrides["device"]] if overrides["device"] != "cpu" else []
    words += ["--workers", str(overrides["workers"])] if overrides["workers"] else []
    words += ["--threads", str(overrides["threads"])] if overrides.get("threads") else []
    words += ["--scheduler", overrides["scheduler"]] if overrides.get("scheduler") else []
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
