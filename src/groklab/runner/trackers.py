"""Trackers: every evaluation of every run, as it trains, to TensorBoard, Weights & Biases or MLflow (the spec's
`log`), and to a user's own callbacks (`groklab.run(..., callbacks=[fn])`).

One tracker run per groklab run, named by its run id, with its params (dotted keys), its metrics and scalar
measures at each evaluated step, and its milestones (memorized, generalized, diverged) as the step they happened.
They live in the process that trains the run (a worker, a Dask worker), opened at the run's first evaluation
there and closed when it finishes or its stack stops. A run resumed later continues its tracker run where the
tracker allows it (TensorBoard's directory, MLflow's run found by its tag, W&B's id).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from groklab.config import Runs, SpecError, run_params
from groklab.engine.listener import Listener
from groklab.engine.result import RunResult
from groklab.store.layout import LOGS_DIR, directory


@dataclass(frozen=True)
class Evaluation:
    """What a callback hears after each evaluation of a run."""

    experiment: str
    run_id: str
    step: int
    metrics: dict[str, float]
    """train/test loss and accuracy, weight_norm, and the scalar measures evaluated at this step."""
    milestones: list[str]
    """The milestones reached at this step: memorized, generalized, diverged (usually none)."""
    params: dict[str, Any] = field(default_factory=dict)
    """The run's settings by dotted key (task.modulus, optimizer.weight_decay, seed, ...)."""


Callback = Callable[[Evaluation], None]
"""A user's sink: called in the process that trains the run (so picklable when runs train in workers)."""


class Tracker(Protocol):
    """One tracker run (of one groklab run)."""

    def log(self, evaluation: Evaluation) -> None: ...

    def close(self) -> None: ...


class TensorBoardRun:
    """Scalars under their metric names, milestones as milestones/NAME = step, params as text
    (DIR/logs/tensorboard/ID)."""

    def __init__(self, root: Path, first: Evaluation) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(directory(root, LOGS_DIR, "tensorboard", first.run_id)))
        table = "\n".join(f"| {k} | {v} |" for k, v in first.params.items())
        self.writer.add_text("params", "| key | value |\n|---|---|\n" + table, global_step=first.step)

    def log(self, evaluation: Evaluation) -> None:
        for name, value in evaluation.metrics.items():
            self.writer.add_scalar(name, value, evaluation.step)
        for milestone in evaluation.milestones:
            self.writer.add_scalar(f"milestones/{milestone}", evaluation.step, evaluation.step)

    def close(self) -> None:
        self.writer.close()


class WandbRun:
    """A W&B run in the project named after the experiment, id EXPERIMENT-RUN_ID (a resumed run continues it)."""

    def __init__(self, root: Path, first: Evaluation) -> None:
        import wandb

        logs = directory(root, LOGS_DIR).resolve()
        for variable, folder in (
            ("WANDB_CACHE_DIR", "cache"),
            ("WANDB_CONFIG_DIR", "config"),
            ("WANDB_DATA_DIR", "data"),
        ):
            os.environ.setdefault(variable, str(logs / "wandb" / folder))  # not ~/.cache etc.: nothing outside
        self.run = wandb.init(
            project=first.experiment,
            name=first.run_id,
            id=f"{first.experiment}-{first.run_id}",
            resume="allow",
            config=first.params,
            dir=str(logs),
            reinit="create_new",
        )

    def log(self, evaluation: Evaluation) -> None:
        row: dict[str, Any] = dict(evaluation.metrics)
        row.update({f"milestones/{milestone}": evaluation.step for milestone in evaluation.milestones})
        self.run.log(row, step=evaluation.step)

    def close(self) -> None:
        self.run.finish()


class MLflowRun:
    """An MLflow run in the experiment named after groklab's, tagged groklab.run_id (a resumed run continues it);
    tracking URI from MLFLOW_TRACKING_URI, else DIR/logs/mlflow.db (SQLite)."""

    def __init__(self, root: Path, first: Evaluation) -> None:
        from mlflow.tracking import MlflowClient

        logs = directory(root, LOGS_DIR).resolve()
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        self.client = MlflowClient(tracking_uri=uri or f"sqlite:///{logs / 'mlflow.db'}")
        found = self.client.get_experiment_by_name(first.experiment)
        artifacts = None if uri else (logs / "mlflow-artifacts").as_uri()  # not ./mlruns in the working directory
        experiment_id = found.experiment_id if found else self.client.create_experiment(first.experiment, artifacts)
        tag = f"tags.`groklab.run_id` = '{first.run_id}'"
        earlier = self.client.search_runs([experiment_id], filter_string=tag, max_results=1)
        if earlier:
            self.run_id = earlier[0].info.run_id
        else:
            created = self.client.create_run(
                experiment_id, run_name=first.run_id, tags={"groklab.run_id": first.run_id}
            )
            self.run_id = created.info.run_id
            for key, value in first.params.items():  # MLflow params are strings, set once
                self.client.log_param(self.run_id, key, value)

    def log(self, evaluation: Evaluation) -> None:
        for name, value in evaluation.metrics.items():
            self.client.log_metric(self.run_id, name, value, step=evaluation.step)
        for milestone in evaluation.milestones:
            self.client.log_metric(self.run_id, f"milestones.{milestone}", evaluation.step, step=evaluation.step)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


TRACKERS: dict[str, tuple[Callable[[Path, Evaluation], Tracker], str]] = {
    "tensorboard": (TensorBoardRun, "tensorboard"),
    "wandb": (WandbRun, "wandb"),
    "mlflow": (MLflowRun, "mlflow"),
}
"""log name -> (tracker run class, the module it needs)."""


def check_trackers(names: Sequence[str]) -> None:
    """Raise SpecError, before anything is written, for a tracker whose library is not installed."""
    import importlib.util

    for name in names:
        module = TRACKERS[name][1]
        if importlib.util.find_spec(module) is None:
            raise SpecError(f"log: {name} needs the {module} package; install it with: pip install 'groklab[{name}]'")


class Trackers(Listener):
    """The spec's trackers and the user's callbacks, hearing every evaluation of one stack's runs."""

    def __init__(self, root: Path, experiment: str, names: list[str], runs: Runs, callbacks: list[Callback]) -> None:
        self.root, self.experiment, self.names, self.callbacks = root, experiment, names, callbacks
        self.params = {run_id: run_params(config) for run_id, config in runs}
        self.open: dict[str, list[Tracker]] = {}

    def on_evaluation(self, run_id: str, step: int, metrics: dict[str, float], milestones: list[str]) -> None:
        if not (self.names or self.callbacks):
            return
        evaluation = Evaluation(self.experiment, run_id, step, metrics, milestones, self.params[run_id])
        if run_id not in self.open:
            self.open[run_id] = [TRACKERS[name][0](self.root, evaluation) for name in self.names]
        for tracker in self.open[run_id]:
            tracker.log(evaluation)
        for callback in self.callbacks:
            callback(evaluation)

    def on_run_done(self, result: RunResult) -> None:
        """The run is done: close its tracker runs."""
        for tracker in self.open.pop(result.run_id, []):
            tracker.close()

    def close(self) -> None:
        """The stack ended (or stopped): close every tracker run still open."""
        for trackers in self.open.values():
            for tracker in trackers:
                tracker.close()
        self.open.clear()
