"""Writing an experiment directory (store/layout.py)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from safetensors.torch import save_file

from groklab.config import Experiment, SpecError, read_yaml, run_params, upgrade
from groklab.engine.result import RunResult
from groklab.files import atomic_write, host_tag, temporary_prefix, temporary_writer
from groklab.store.layout import (
    CHECKPOINT_DIR,
    DATA_FILE,
    LEASE_DIR,
    MEASURES_FILE,
    META_FILE,
    METRICS_FILE,
    PROGRESS_FILE,
    PROGRESS_METRICS,
    RESULT_FILE,
    RUNS_DIR,
    SESSIONS_DIR,
    SPEC_FILE,
    WEIGHTS_DIR,
    WEIGHTS_FILE,
    directory,
    links,
    snapshot_name,
)
from groklab.store.leases import STALE_SECONDS, Leases, alive
from groklab.store.reader import DamagedRunWarning, checked_meta


def spec_text(experiment: Experiment) -> str:
    """The resolved spec as YAML (every default written out)."""
    return yaml.safe_dump(experiment.model_dump(mode="json"), sort_keys=False)


class ExperimentStore:
    """An experiment directory being written; `open` creates it or resumes the same experiment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.resumed = False
        """Whether `open` found this same experiment here (its sessions' time adds up)."""

    @classmethod
    def open(cls, root: Path, experiment: Experiment, leases: Leases) -> ExperimentStore:
        """Create `root` for `experiment`, or reopen it if it holds the same experiment (to resume); enters
        `leases` (this process's presence in the directory), and leaves them if it refuses.

        A directory belongs to one spec from its first write: this process announces itself, then creates
        experiment.yaml exclusively, so of two processes started at once with different specs the later one
        always sees the first and is refused. A stored spec that trains other runs is replaced only where none of
        its runs finished and no other process is present (a corrected command after a failed start).
        Raises SpecError if `root` holds another experiment or other files.
        """
        text = spec_text(experiment)
        if root.exists() and not root.is_dir():
            raise SpecError(f"--out {root}: is a file; give a new or empty directory")
        if found := links(root):
            raise SpecError(f"--out {root}: {found[0]} is a symbolic link; groklab writes only inside --out")
        if root.exists() and not (root / SPEC_FILE).exists() and any(not _being_created(p) for p in root.iterdir()):
            raise SpecError(f"--out {root}: exists and is not a groklab experiment; give a new or empty directory")
        store = cls(root)
        try:
            (root / RUNS_DIR).mkdir(parents=True, exist_ok=True)
            leases.__enter__()
            stored = _create_exclusively(root / SPEC_FILE, text)  # None: this process made the directory's spec
            store.resumed = stored is not None and _what_trains(stored, root) == _what_trains(text, root)
            if stored is not None and not store.resumed:
                if store.finished_run_ids():
                    raise SpecError(
                        f"--out {root}: already holds another experiment; give a new directory "
                        "(or the same spec to resume it)"
                    )
                if others := leases.others():
                    raise SpecError(
                        f"--out {root}: another process (host {others[0].get('host')}, pid {others[0].get('pid')}) "
                        "is training another experiment there; give a new directory (or the same spec to join it)"
                    )
                shutil.rmtree(root / CHECKPOINT_DIR, ignore_errors=True)  # another spec's stacks: never resumed
            if stored is not None and stored != text:  # the same runs with other notes, claims or trackers
                atomic_write(root / SPEC_FILE, lambda p: p.write_text(text))
            store.remove_stale_temporaries()
        except OSError as error:
            leases.__exit__(None, None, None)
            raise SpecError(f"--out {root}: cannot write there ({error.strerror or error})") from None
        except BaseException:
            leases.__exit__(None, None, None)
            raise
        return store

    def remove_stale_temporaries(self) -> None:
        """Delete the temporary files a killed process left (.NAME.HOST.PID.xxxx next to NAME): those of a dead
        process on this host, or older than STALE_SECONDS from another host; never a finished file, never
        one that a live process sharing the directory is writing."""
        here = host_tag()
        patterns = (".*.*", f"{RUNS_DIR}/*/.*.*", f"{CHECKPOINT_DIR}/.*.*")
        for path in [found for pattern in patterns for found in self.root.glob(pattern)]:
            if not path.is_file() or path.is_symlink():
                continue
            host, pid = temporary_writer(path)
            if host == here and pid is not None and alive(pid):
                continue
            if host not in (here, None) and time.time() - path.stat().st_mtime < STALE_SECONDS:
                continue
            path.unlink(missing_ok=True)

    def write_progress(self, results: list[RunResult]) -> None:
        """Write unfinished runs' progress (status running or interrupted): the row and the curve so far."""
        for result in results:
            run_dir = self._run_dir(result.run_id)
            if (run_dir / RESULT_FILE).is_file():
                continue  # finished meanwhile (in another process)
            metrics = pd.DataFrame(result.metrics)
            atomic_write(run_dir / PROGRESS_METRICS, functools.partial(write_parquet, metrics))
            row = json.dumps(result.row() | {"updated": _now()}, indent=1, default=_json_default)
            atomic_write(run_dir / PROGRESS_FILE, functools.partial(_write_text, row))

    def mark_failed(self, stack: list[tuple[str, Any]], error: str, trained_by: dict[str, Any]) -> None:
        """Mark the unfinished runs of a stack that raised as failed, with the error, keeping their progress."""
        for run_id, config in stack:
            run_dir = self._run_dir(run_id)
            if (run_dir / RESULT_FILE).is_file():
                continue
            try:
                row = json.loads((run_dir / PROGRESS_FILE).read_text())
                if not isinstance(row, dict):
                    raise ValueError("not a run's progress")  # damaged: written anew from the config
            except (OSError, ValueError):  # failed before its first progress: what the config says
                params = {k: v for k, v in run_params(config).items() if not k.startswith("measures.")}
                row = {"run_id": run_id, "seed": config.seed, "params": params, "steps": 0, "final": {}}
                row |= {"memorized_step": None, "generalized_step": None, "wall_time_s": 0.0}
            row |= {"status": "failed", "error": error, "trained_by": trained_by, "updated": _now()}
            text = json.dumps(row, indent=1, default=_json_default)
            atomic_write(run_dir / PROGRESS_FILE, functools.partial(_write_text, text))

    def _run_dir(self, run_id: str) -> Path:
        return directory(self.root, RUNS_DIR, run_id)

    def write_new_run(self, result: RunResult) -> None:
        """Write a finished run unless it is already on disk (it finished after its stack's last checkpoint)."""
        if not (self.root / RUNS_DIR / result.run_id / RESULT_FILE).is_file():
            self.write_run(result)

    def failed_run_ids(self, since: float) -> set[str]:
        """Runs marked failed since a time (seconds since the epoch): not retried by a process that started
        before they failed; the next command retries them."""
        failed = set()
        for path in (self.root / RUNS_DIR).glob(f"*/{PROGRESS_FILE}"):
            try:
                if path.stat().st_mtime >= since and json.loads(path.read_text()).get("status") == "failed":
                    failed.add(path.parent.name)
            except (OSError, ValueError, AttributeError):
                continue
        return failed

    def finished_run_ids(self) -> set[str]:
        """Runs already complete on disk (skipped when resuming)."""
        return {p.parent.name for p in (self.root / RUNS_DIR).glob(f"*/{RESULT_FILE}")}

    def write_run(self, result: RunResult) -> None:
        """Write one finished run; result.json goes last so the run appears only when complete (then its
        progress files go)."""
        run_dir = self._run_dir(result.run_id)
        metrics = pd.DataFrame(result.metrics)
        atomic_write(run_dir / METRICS_FILE, lambda p: metrics.to_parquet(p, index=False))
        for step, weights in result.snapshots.items():  # first, so that a run with result.json has them all
            directory(self.root, RUNS_DIR, result.run_id, WEIGHTS_DIR)
            path = run_dir / WEIGHTS_DIR / snapshot_name(step)
            atomic_write(path, functools.partial(_save_safetensors, weights, {"step": str(step)}))
        final = {"step": str(result.steps)}
        atomic_write(run_dir / WEIGHTS_FILE, functools.partial(_save_safetensors, result.state_dict, final))
        atomic_write(run_dir / DATA_FILE, lambda p: save_npz(p, result.data))
        atomic_write(run_dir / MEASURES_FILE, lambda p: save_npz(p, result.series))
        row = json.dumps(result.row(), indent=1, default=_json_default)
        atomic_write(run_dir / RESULT_FILE, lambda p: p.write_text(row))
        for name in (PROGRESS_FILE, PROGRESS_METRICS):
            (run_dir / name).unlink(missing_ok=True)

    def write_session(self, session: dict[str, Any]) -> None:
        """Record what one process did (DIR/sessions/HOST-PID.json): several may share the directory."""
        folder = directory(self.root, SESSIONS_DIR)
        text = json.dumps(session, indent=1, default=_json_default)
        atomic_write(folder / f"{session['host']}-{session['pid']}.json", lambda p: p.write_text(text))

    def read_meta(self) -> dict[str, Any]:
        """meta.json as an earlier run of this experiment left it ({} if none; a damaged one is a warning, and
        its fields that can be read are kept)."""
        path = self.root / META_FILE
        if not path.is_file():
            return {}
        try:
            meta = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            warnings.warn(f"{path}: damaged ({type(error).__name__}); written anew", DamagedRunWarning, 2)
            return {}
        if not isinstance(meta, dict):
            warnings.warn(f"{path}: damaged (not a JSON object); written anew", DamagedRunWarning, 2)
            return {}
        return checked_meta(meta, path)

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Write (or overwrite) meta.json."""
        text = json.dumps(meta, indent=1, default=_json_default)
        atomic_write(self.root / META_FILE, lambda p: p.write_text(text))


def _being_created(path: Path) -> bool:
    """What another process starting an experiment at the same moment (a SLURM array) has made before its
    experiment.yaml is in place: the run and lease directories, or the temporary file of the spec itself."""
    return (path.name in (RUNS_DIR, LEASE_DIR) and path.is_dir()) or path.name.startswith(f".{SPEC_FILE}.")


def _create_exclusively(path: Path, text: str) -> str | None:
    """Write `text` to `path` if no file is there (None), else return what is there: one process's spec wins
    however close the starts. The text goes to a temporary file that is hard-linked into place, so no reader
    sees it half written; where the filesystem has no hard links, an exclusive create."""
    if path.exists():
        return path.read_text(errors="replace")
    temporary = path.with_name(temporary_prefix(path) + "spec")
    temporary.write_text(text)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return path.read_text(errors="replace")
    except OSError:  # no hard links here (some network and FUSE filesystems)
        try:
            with open(path, "x") as handle:
                handle.write(text)
        except FileExistsError:
            return path.read_text(errors="replace")
    finally:
        temporary.unlink(missing_ok=True)
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool


PRESENTATION_KEYS = ("description", "notes", "claims", "quick", "log")
"""Spec keys that change what is said about the runs or where they are logged, not the runs themselves."""


def _what_trains(text: str, root: Path) -> dict[str, Any]:
    """A stored spec (its keys as this version names them) without its PRESENTATION_KEYS: two specs that agree
    here train the same runs. SpecError for one that is not a spec (damaged, hand-edited)."""
    try:
        spec = read_yaml(text) or {}
    except (SpecError, yaml.YAMLError) as error:
        problem = error if isinstance(error, SpecError) else getattr(error, "problem", None) or type(error).__name__
        raise SpecError(f"--out {root}: its {SPEC_FILE} is damaged ({problem}); give a new directory") from None
    if not isinstance(spec, dict):
        raise SpecError(f"--out {root}: its {SPEC_FILE} is not a spec (a mapping); give a new directory")
    spec = upgrade(spec)
    return {key: value for key, value in spec.items() if key not in PRESENTATION_KEYS}


def _save_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    """safetensors: tensors and string metadata only, readable without torch's unpickler (and by other tools)."""
    save_file({name: t.contiguous() for name, t in tensors.items()}, str(path), metadata=metadata)


def _write_text(text: str, path: Path) -> None:
    path.write_text(text)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    frame.to_parquet(path, index=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
