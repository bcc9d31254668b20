"""Reading an experiment directory back as pandas frames."""

from __future__ import annotations

import importlib
import json
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import ValidationError

from groklab.config import RunConfig, SpecError, format_validation_error, read_yaml, set_dotted, upgrade
from groklab.store.layout import (
    DATA_FILE,
    LEGACY_WEIGHTS_FILE,
    MEASURES_FILE,
    META_FILE,
    METRICS_FILE,
    PROGRESS_FILE,
    PROGRESS_METRICS,
    RESULT_FILE,
    RUNS_DIR,
    SPEC_FILE,
    WEIGHTS_DIR,
    WEIGHTS_FILE,
    snapshot_name,
)
from groklab.store.leases import holder

if TYPE_CHECKING:
    import torch

    from groklab.models import Model


@dataclass(repr=False)
class ExperimentResult:
    """A stored experiment: its spec, metadata, one row per finished run, and metrics over steps.

    In a notebook it shows itself as its runs table and its claims (`_repr_html_`); `plot()` returns its figures.
    """

    root: Path
    spec: dict[str, Any]
    meta: dict[str, Any]
    rows: list[dict[str, Any]]
    """The finished runs' summary rows, as written (params nested), ordered by run_id."""
    progress: list[dict[str, Any]] = field(default_factory=list)
    """The unfinished runs that have started: the same fields, status running (a live process holds the run),
    interrupted (none does: stopped, killed, or its node lost) or failed (with its error); steps is the last
    step saved and final the latest accuracies and losses."""
    damaged_series: set[str] = field(default_factory=set)
    """Runs whose measures.npz could not be read (warned about once)."""

    @property
    def partial_metrics(self) -> pd.DataFrame:
        """The unfinished runs' curves so far, as `metrics` (saved at their stacks' checkpoints)."""
        frames = []
        for row in self.progress:
            try:
                frame = pd.read_parquet(self.run_dir(row["run_id"]) / PROGRESS_METRICS)
            except (OSError, ValueError, pa.ArrowException):
                continue  # failed before its first checkpoint, or finished meanwhile
            frame.insert(0, "run_id", row["run_id"])
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "step"])

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run: run_id, seed, status, steps, memorized/generalized steps, final_*, the events
        of measures/curve_events.py, the final measures' scalars, wall_time_s, and every param."""
        records = []
        for row in self.rows:
            record = {k: v for k, v in row.items() if k not in ("params", "final", "events", "analysis")}
            record.update({f"final_{k}": v for k, v in row["final"].items()})
            record.update(row.get("events", {}))
            record.update(row.get("analysis", {}))
            record.update({k: v for k, v in row["params"].items() if k != "seed"})
            records.append(record)
        frame = pd.DataFrame.from_records(records)
        for column in ("memorized_step", "generalized_step"):
            if column in frame:
                frame[column] = frame[column].astype("Int64")
        return frame

    @property
    def metrics(self) -> pd.DataFrame:
        """Long frame: run_id, step, train_loss, train_acc, test_loss, test_acc, weight_norm, and one column
        per scalar measure (NaN at evaluations that skipped it)."""
        frames = []
        for row in self.rows:
            frame = pd.read_parquet(self.run_dir(row["run_id"]) / METRICS_FILE)
            frame.insert(0, "run_id", row["run_id"])
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "step"])

    @property
    def varied_keys(self) -> list[str]:
        """What tells the runs apart besides the seed: `variant` when the spec has variants, then the swept keys."""
        return ["variant"] * bool(self.spec.get("variants")) + list((self.spec.get("sweep") or {}).keys())

    def steps_to(self, column: str, level: float) -> pd.DataFrame:
        """Per run: its variant, its setting (the swept values, as text), the first evaluated step with `column` >=
        level (NaN: never in its budget), its budget (the steps it trained) and the wall time to that step, read as
        its wall time x step / steps (evaluations included: an estimate; every run of an experiment is timed alike).
        """
        runs = self.runs.set_index("run_id")
        swept = [key for key in self.varied_keys if key != "variant" and key in runs]
        rows = []
        for run_id, frame in self.metrics.groupby("run_id"):
            hits = frame.loc[frame[column] >= level, "step"] if column in frame else pd.Series(dtype=float)
            step = float(hits.iloc[0]) if len(hits) else np.nan
            run = runs.loc[run_id]
            budget = float(run.get("steps", np.nan))
            wall = float(run.get("wall_time_s", np.nan)) * step / budget if budget else np.nan
            setting = ", ".join(f"{key.rsplit('.', 1)[-1]} {run[key]:g}" if isinstance(run[key], float)
                                else f"{key.rsplit('.', 1)[-1]} {run[key]}" for key in swept)  # fmt: skip
            variant = run["variant"] if "variant" in runs else ""
            rows.append({"run_id": run_id, "variant": variant, "setting": setting, "step": step, "budget": budget,
                         "wall_s": wall})  # fmt: skip
        return pd.DataFrame(rows, columns=["run_id", "variant", "setting", "step", "budget", "wall_s"])

    def at_best_setting(self, column: str, level: float) -> pd.DataFrame:
        """steps_to's runs of each variant's best setting: the swept setting whose median run gets there first (a
        run that never does counts as infinitely late), the same tuning budget for every variant."""
        frame = self.steps_to(column, level)
        if frame.empty:
            return frame
        medians = frame.assign(late=frame["step"].fillna(np.inf)).groupby(["variant", "setting"], sort=False)["late"]
        best = medians.median().reset_index().sort_values("late", kind="stable").drop_duplicates("variant")
        chosen = set(zip(best["variant"], best["setting"]))
        return frame[[(v, s) in chosen for v, s in zip(frame["variant"], frame["setting"])]]

    def last_measured(self, column: str) -> pd.Series:
        """Each run's last measured (not NaN) value of a metrics column, by run_id; empty if none has it."""
        metrics = self.metrics
        if column not in metrics:
            return pd.Series(dtype=float)
        return metrics.dropna(subset=[column]).sort_values("step").groupby("run_id")[column].last()

    def __repr__(self) -> str:
        name = self.spec.get("name", "experiment")
        counts = f"{len(self.rows)} of {self.meta.get('n_runs', '?')} runs finished"
        generalized = sum(row.get("generalized_step") is not None for row in self.rows)
        return f"<ExperimentResult {name!r}: {counts}, {generalized} generalized; {self.root}>"

    def _repr_html_(self) -> str:
        """The runs table and the claims, for Jupyter."""
        return _presentation().summary_html(self)

    def plot(self, what: list[str] | None = None) -> dict[str, Any]:
        """{name: matplotlib Figure} of this experiment (groklab.figures.plot): every applicable figure, or `what`."""
        return importlib.import_module("groklab.figures").plot(self, what)

    def run_dir(self, run_id: str) -> Path:
        """Directory of one run."""
        return self.root / RUNS_DIR / run_id

    def weights(self, run_id: str, step: int | None = None) -> dict[str, torch.Tensor]:
        """One run's state_dict (no run axis): its final weights, or those stored at `step`
        (measures.snapshot_steps; `snapshot_steps(run_id)` lists them). safetensors files, or a torch file
        read with weights_only=True (tensors only, never code) for stores written before safetensors."""
        import torch  # here, not at the top: a table or a query of the store needs no torch (seconds to import)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        run_dir = self.run_dir(run_id)
        if step is not None:
            path = run_dir / WEIGHTS_DIR / snapshot_name(step)
            if not path.is_file():
                stored = ", ".join(map(str, self.snapshot_steps(run_id))) or "none (set measures.snapshot_steps)"
                raise SpecError(f"step {step}: no weights of {run_id} stored at that step; stored: {stored}")
        elif (run_dir / WEIGHTS_FILE).is_file():
            path = run_dir / WEIGHTS_FILE
        else:
            path = run_dir / LEGACY_WEIGHTS_FILE
        try:
            return load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, weights_only=True)
        except (SafetensorError, OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise DamagedFile(f"{path}: damaged, cannot be read ({type(error).__name__})") from None

    def snapshot_steps(self, run_id: str) -> list[int]:
        """The steps at which the run's weights were stored (measures.snapshot_steps), ascending."""
        folder = self.run_dir(run_id) / WEIGHTS_DIR
        return sorted(int(p.name[5:14]) for p in folder.glob("step-*.safetensors")) if folder.is_dir() else []

    def series(self, run_id: str) -> dict[str, np.ndarray]:
        """Vector-valued measures of one run: name -> (n_evaluations, ...) with name.steps -> their steps,
        and the final measures' arrays (e.g. the pruning curve)."""
        path = self.run_dir(run_id) / MEASURES_FILE
        if not path.is_file():
            return {}
        try:
            return read_npz(path)
        except SpecError as error:
            if run_id not in self.damaged_series:  # said once, however many figures ask
                self.damaged_series.add(run_id)
                warnings.warn(f"{error}; its vector measures are left out", DamagedRunWarning, 2)
            return {}

    def run_config(self, run_id: str) -> RunConfig:
        """The resolved config of one run (from its stored params and the spec's measures)."""
        row = next(r for r in self.rows if r["run_id"] == run_id)
        nested: dict[str, Any] = {"measures": self.spec.get("measures", {})}
        try:
            for key, value in row["params"].items():
                set_dotted(nested, key, value)
            return RunConfig.model_validate(nested)
        except ValidationError as error:
            raise DamagedFile(f"{self.run_dir(run_id) / RESULT_FILE}: {format_validation_error(error)}") from None

    def model(self, run_id: str) -> tuple[Model, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The run's model, its final parameters and its buffers (BatchNorm running statistics; {} if none),
        each with a run axis of 1: `model.forward(params, x, buffers=buffers)` (MLP) evaluates it."""
        from groklab.data import make_data
        from groklab.models import build_model

        config = self.run_config(run_id)
        model = build_model(config.model, make_data(config.task, config.seed))
        state = {name: p[None] for name, p in self.weights(run_id).items()}
        buffers = {n: state.pop(n) for n in list(state) if n.startswith("running_") or n == "output_scale"}
        return model, state, buffers

    def data(self, run_id: str) -> dict[str, np.ndarray]:
        """The run's data: x/y train/test, y_train_clean, corrupted mask, task facts."""
        return read_npz(self.run_dir(run_id) / DATA_FILE)


class DamagedFile(SpecError):
    """A stored file that cannot be read or does not fit its experiment (damaged, hand-edited, another's)."""


class DamagedRunWarning(UserWarning):
    """A stored run could not be read; it is skipped and the rest of the experiment is read."""


ROW_FIELDS = {"run_id": str, "seed": int, "params": dict, "status": str, "steps": int, "final": dict}
FINAL_FIELDS = ("train_acc", "test_acc", "train_loss", "test_loss")


def load(root: str | Path) -> ExperimentResult:
    """Load a stored (finished or interrupted) experiment directory.

    A damaged run (unreadable result.json, missing fields, unreadable metrics.parquet) is skipped with a
    one-line DamagedRunWarning naming the file; a damaged experiment.yaml or meta.json is a SpecError.
    """
    root = Path(root)
    spec_path, meta_path = root / SPEC_FILE, root / META_FILE
    if not spec_path.is_file():
        raise SpecError(f"{root}: not a groklab experiment directory (no {SPEC_FILE})")
    spec = upgrade(_read(spec_path, read_yaml))  # an earlier version's keys as this one names them
    meta = checked_meta(_read(meta_path, json.loads), meta_path) if meta_path.is_file() else {}
    rows = []
    for path in sorted((root / RUNS_DIR).glob(f"*/{RESULT_FILE}")):
        row, problem = _read_row(path)
        if problem:
            warnings.warn(f"{problem}; run skipped", DamagedRunWarning, stacklevel=2)
        else:
            rows.append(row)
    return ExperimentResult(root=root, spec=spec, meta=meta, rows=rows, progress=_progress(root))


def _progress(root: Path) -> list[dict[str, Any]]:
    """The unfinished runs' progress rows, each with its status as of now; a damaged one is left out with a
    DamagedRunWarning (progress is what a run did so far: the run itself is retrained or resumed, not lost)."""
    rows = []
    for path in sorted((root / RUNS_DIR).glob(f"*/{PROGRESS_FILE}")):
        if (path.parent / RESULT_FILE).is_file():
            continue  # finished between two writes
        try:
            row = json.loads(path.read_text())
        except FileNotFoundError:
            continue  # finished meanwhile
        except (OSError, UnicodeDecodeError, ValueError) as error:
            warnings.warn(f"{path}: damaged ({type(error).__name__}); its progress is not shown", DamagedRunWarning, 3)
            continue
        if problem := _malformed(row):
            warnings.warn(f"{path}: {problem}; its progress is not shown", DamagedRunWarning, 3)
            continue
        if row.get("status") == "running" and holder(root, row["run_id"]) is None:
            row["status"] = "interrupted"  # no live process holds it: stopped, killed, or its node is gone
        rows.append(row)
    return rows


def _read(path: Path, parse: Any) -> dict[str, Any]:
    """A stored mapping (experiment.yaml, meta.json), or SpecError naming the file and what is wrong."""
    try:
        data = parse(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        raise DamagedFile(f"{path}: damaged, cannot be read ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: damaged, holds a {type(data).__name__} where a mapping belongs")
    return data


def _read_row(path: Path) -> tuple[dict[str, Any], str | None]:
    """A run's summary row and None, or ({}, what is wrong with the run's files)."""
    try:
        row = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return {}, f"{path}: damaged ({type(error).__name__})"
    if problem := _malformed(row, finished=True):
        return {}, f"{path}: {problem}"
    metrics = path.parent / METRICS_FILE
    try:
        pq.read_metadata(metrics)
    except (OSError, ValueError, pa.ArrowException) as error:
        return {}, f"{metrics}: damaged ({type(error).__name__})"
    return row, None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a stored .npz (never pickled objects), or SpecError naming the file if it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return dict(arrays)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise DamagedFile(f"{path}: damaged, cannot be read ({type(error).__name__})") from None


def _malformed(row: Any, finished: bool = False) -> str | None:
    """What is wrong with a stored run row (result.json: `finished`, or progress.json), or None."""
    if not isinstance(row, dict):
        return "damaged (not a JSON object)"
    wrong = [k for k, kind in ROW_FIELDS.items() if not isinstance(row.get(k), kind)]
    if isinstance(row.get("final"), dict):
        wrong += [
            f"final.{k}" for k in FINAL_FIELDS if not isinstance(row["final"].get(k, 0), (int, float, type(None)))
        ]
        wrong += [f"final.{k}" for k in FINAL_FIELDS if k not in row["final"] and finished]
    for key in ("memorized_step", "generalized_step"):
        if not isinstance(row.get(key), (int, type(None))):
            wrong.append(key)
    return f"missing or malformed {', '.join(wrong)}" if wrong else None


META_FIELDS: dict[str, type | tuple[type, ...]] = {
    "n_runs": int, "resumed_runs": int, "state": str, "command": str, "device": str, "started": str,
    "finished": str, "wall_time_s": (int, float), "overrides": dict, "plan": dict, "failed_runs": list,
    "untrained_runs": list, "data_files": dict, "code": list, "groklab": str, "torch": str, "python": str,
    "device_name": str,
}  # fmt: skip
"""meta.json's fields that groklab reads back, and their JSON types."""


def checked_meta(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """meta.json without the fields of a wrong type (a hand edit), which a one-line warning names: what is good
    in it is kept."""
    wrong = [k for k, kind in META_FIELDS.items() if k in meta and not _is(meta[k], kind)]
    if wrong:
        warnings.warn(f"{path}: malformed {', '.join(wrong)}; left out", DamagedRunWarning, 3)
    return {k: v for k, v in meta.items() if k not in wrong}


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, (int, float)))


def _presentation() -> ModuleType:
    """groklab.html_report, which draws on the figures and the claims' checks: both sit above the store, so a
    result reaches them when asked to show itself, not at import (as pandas' DataFrame.plot finds its backend)."""
    return importlib.import_module("groklab.html_report")
