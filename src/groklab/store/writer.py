"""Writing an experiment directory (see groklab.store for the layout)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from groklab.config import Experiment, SpecError
from groklab.engine.checkpoint import DamagedCheckpoint
from groklab.engine.checkpoint import load as load_checkpoint
from groklab.engine.result import RunResult

SPEC_FILE, META_FILE, RUNS_DIR, RESULT_FILE = "experiment.yaml", "meta.json", "runs", "result.json"
CHECKPOINT_DIR = "checkpoints"


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file in the same directory, then rename over the target."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def spec_text(experiment: Experiment) -> str:
    """The resolved spec as YAML (every default written out)."""
    return yaml.safe_dump(experiment.model_dump(mode="json"), sort_keys=False)


class ExperimentStore:
    """An experiment directory being written; `open` creates it or resumes the same experiment."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, root: Path, experiment: Experiment) -> ExperimentStore:
        """Create `root` for `experiment`, or reopen it if it holds the same experiment (to resume).

        Raises SpecError if `root` holds another experiment or other files.
        """
        text = spec_text(experiment)
        spec_path = root / SPEC_FILE
        if root.exists() and not root.is_dir():
            raise SpecError(f"--out {root}: is a file; give a new or empty directory")
        links = [p for p in (root, root / RUNS_DIR, *root.glob(f"{RUNS_DIR}/*")) if p.is_symlink()]
        if links:
            raise SpecError(f"--out {root}: {links[0]} is a symbolic link; groklab writes only inside --out")
        store = cls(root)
        if spec_path.exists():
            # A directory whose experiment finished no run (e.g. one that failed at its start) is reused by a
            # corrected command; one with finished runs only by the same spec, to resume it.
            if spec_path.read_text() != text and store.finished_run_ids():
                raise SpecError(
                    f"--out {root}: already holds another experiment; give a new directory "
                    "(or the same spec to resume it)"
                )
        elif root.exists() and any(root.iterdir()):
            raise SpecError(f"--out {root}: exists and is not a groklab experiment; give a new or empty directory")
        try:
            (root / RUNS_DIR).mkdir(parents=True, exist_ok=True)
            store.remove_stale_temporaries()
            if not spec_path.exists() or spec_path.read_text() != text:
                shutil.rmtree(root / CHECKPOINT_DIR, ignore_errors=True)  # another spec's stacks: never resumed
                _atomic(spec_path, lambda p: p.write_text(text))
        except OSError as error:
            raise SpecError(f"--out {root}: cannot write there ({error.strerror or error})") from None
        return store

    def remove_stale_temporaries(self) -> None:
        """Delete the temporary files a killed process left (.NAME.xxxx next to NAME): never a finished file."""
        for path in [*self.root.glob(".*.*"), *self.root.glob(f"{RUNS_DIR}/*/.*.*")]:
            if path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)

    def checkpoint_path(self, stack: list[tuple[str, Any]]) -> Path:
        """Where a stack checkpoints: DIR/checkpoints/<its first run id>.pt."""
        return self.root / CHECKPOINT_DIR / f"{stack[0][0]}.pt"

    def checkpointed_stacks(self, configs: dict[str, Any], finished: set[str]) -> list[list[tuple[str, Any]]]:
        """The stacks an interrupted or killed session left checkpoints of, to resume as they were.

        A checkpoint whose runs are all finished (killed between the last write and its removal) is removed;
        so is one that cannot be read, with a warning: its runs train again from the start.
        """
        stacks = []
        for path in sorted((self.root / CHECKPOINT_DIR).glob("*.pt")):
            try:
                ids = list(load_checkpoint(path)["ids"])
            except DamagedCheckpoint as error:  # truncated or altered (checksum): never resume from it
                warnings.warn(f"{error}; its runs start again from step 0", stacklevel=2)
                path.unlink()
                continue
            if all(run_id in finished for run_id in ids) or any(run_id not in configs for run_id in ids):
                path.unlink()
                continue
            os.replace(path, path.with_name(f"{ids[0]}.pt"))  # named after the stack's first run, as it resumes
            stacks.append([(run_id, configs[run_id]) for run_id in ids])
        return stacks

    def write_new_run(self, result: RunResult) -> None:
        """Write a finished run unless it is already on disk (it finished after its stack's last checkpoint)."""
        if not (self.root / RUNS_DIR / result.run_id / RESULT_FILE).is_file():
            self.write_run(result)

    def finished_run_ids(self) -> set[str]:
        """Runs already complete on disk (skipped when resuming)."""
        return {p.parent.name for p in (self.root / RUNS_DIR).glob(f"*/{RESULT_FILE}")}

    def write_run(self, result: RunResult) -> None:
        """Write one finished run; result.json goes last so the run appears only when complete."""
        run_dir = self.root / RUNS_DIR / result.run_id
        if run_dir.is_symlink():
            raise SpecError(f"{run_dir}: is a symbolic link; groklab writes only inside --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics = pd.DataFrame(result.metrics)
        _atomic(run_dir / "metrics.parquet", lambda p: metrics.to_parquet(p, index=False))
        _atomic(run_dir / "weights.pt", lambda p: torch.save(result.state_dict, p))
        _atomic(run_dir / "data.npz", lambda p: _save_npz(p, result.data))
        _atomic(run_dir / "measures.npz", lambda p: _save_npz(p, result.series))
        row = json.dumps(result.row(), indent=1, default=_json_default)
        _atomic(run_dir / RESULT_FILE, lambda p: p.write_text(row))

    def read_meta(self) -> dict[str, Any]:
        """meta.json as an earlier run of this experiment left it ({} if none)."""
        path = self.root / META_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Write (or overwrite) meta.json."""
        text = json.dumps(meta, indent=1, default=_json_default)
        _atomic(self.root / META_FILE, lambda p: p.write_text(text))


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
