"""Trackers and callbacks hear every evaluation: what TensorBoard, MLflow (SQLite) and W&B (offline) read back
equals the stored metrics, one tracker run per groklab run, and nothing is written outside --out."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

import groklab
from groklab.config import SpecError
from groklab.runner.trackers import Evaluation, check_trackers

SPEC = {
    "name": "tracked",
    "task": {"modulus": 23, "train_fraction": 0.5},
    "model": {"width": 64, "activation": "quadratic", "bias": False, "init": "gromov"},
    "optimizer": {"lr": 0.01, "weight_decay": 5.0},
    "train": {"steps": 40, "loss": "mse", "eval_every": 10},
    "sweep": {"optimizer.weight_decay": [1.0, 5.0]},
}


def _stored(result: groklab.ExperimentResult, run_id: str, column: str) -> list[tuple[int, float]]:
    metrics = result.metrics[result.metrics["run_id"] == run_id]
    return list(zip(metrics["step"].astype(int), metrics[column].astype(float)))


def test_tensorboard_and_mlflow_read_back_the_stored_metrics(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = groklab.run({**SPEC, "log": ["tensorboard", "mlflow"]}, out=tmp_path / "exp", progress=False)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'exp' / 'logs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    mlflow_runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(mlflow_runs) == ["run-0000", "run-0001"]
    for run_id in ("run-0000", "run-0001"):
        board = EventAccumulator(str(tmp_path / "exp" / "logs" / "tensorboard" / run_id))
        board.Reload()
        for column in ("test_acc", "train_loss", "neuron_ipr_mean"):
            stored = _stored(result, run_id, column)
            steps, values = [s for s, _ in stored], [v for _, v in stored]
            scalars = board.Scalars(column)
            assert [e.step for e in scalars] == steps and [e.value for e in scalars] == pytest.approx(values, rel=1e-6)
            history = sorted(client.get_metric_history(mlflow_runs[run_id].info.run_id, column), key=lambda m: m.step)
            assert [m.step for m in history] == steps and [m.value for m in history] == pytest.approx(values, rel=1e-6)
        params = mlflow_runs[run_id].data.params
        assert params["optimizer.weight_decay"] == str(
            result.runs.set_index("run_id").loc[run_id, "optimizer.weight_decay"]
        )
    # not vacuous: the two runs' curves differ
    assert _stored(result, "run-0000", "test_loss") != _stored(result, "run-0001", "test_loss")
    assert {p.name for p in tmp_path.iterdir()} == {"exp"}  # nothing beside the experiment


def test_wandb_offline_keeps_each_run_in_the_experiment_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    # W&B's own reader of offline files is gone from Python (its core reads them): what each run was sent is read
    # through the run objects themselves, and the offline files are checked to be there, one run each.
    sent: dict[str, list[tuple[int, dict[str, float]]]] = {}
    configs: dict[str, dict[str, object]] = {}
    log = wandb.Run.log

    def spy(self: wandb.Run, data: dict[str, float], step: int | None = None, **kwargs: object) -> None:
        sent.setdefault(self.name, []).append((step, dict(data)))
        configs[self.name] = dict(self.config)
        log(self, data, step=step, **kwargs)

    monkeypatch.setattr(wandb.Run, "log", spy)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # so that a write to ~ would show
    result = groklab.run({**SPEC, "log": ["wandb"]}, out=tmp_path / "exp", progress=False)
    folders = sorted((tmp_path / "exp" / "logs" / "wandb").glob("offline-run-*"))
    assert [f.name.rsplit("-", 2)[-2:] for f in folders] == [["run", "0000"], ["run", "0001"]]
    assert all(next(f.glob("*.wandb")).stat().st_size > 1000 for f in folders)
    for run_id in ("run-0000", "run-0001"):
        assert [(step, row["test_acc"]) for step, row in sent[run_id]] == _stored(result, run_id, "test_acc")
        assert (
            configs[run_id]["optimizer.weight_decay"]
            == result.runs.set_index("run_id").loc[run_id, "optimizer.weight_decay"]
        )
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*"))
    for variable in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        os.environ.pop(variable, None)  # set by the tracker for this process


def test_callbacks_hear_every_evaluation_of_every_run(tmp_path: Path) -> None:
    heard: list[Evaluation] = []
    result = groklab.run(SPEC, out=tmp_path / "exp", progress=False, callbacks=[heard.append])
    frame = pd.DataFrame([{"run_id": e.run_id, "step": e.step, **e.metrics} for e in heard])
    stored = result.metrics.sort_values(["run_id", "step"]).reset_index(drop=True)
    frame = frame.sort_values(["run_id", "step"]).reset_index(drop=True)
    pd.testing.assert_series_equal(frame["test_acc"], stored["test_acc"], check_dtype=False)
    pd.testing.assert_series_equal(frame["neuron_ipr_mean"], stored["neuron_ipr_mean"], check_dtype=False)
    memorized = {(e.run_id, e.step) for e in heard if "memorized" in e.milestones}
    expected = {(r, int(s)) for r, s in zip(result.runs["run_id"], result.runs["memorized_step"]) if pd.notna(s)}
    assert memorized == expected
    assert {e.params["optimizer.weight_decay"] for e in heard} == {1.0, 5.0} and heard[0].experiment == "tracked"


def test_a_tracker_whose_library_is_missing_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(
        SpecError, match=r"^log: wandb needs the wandb package; install it with: pip install 'groklab\[wandb\]'$"
    ):
        check_trackers(["tensorboard", "wandb"])
    with pytest.raises(SpecError):
        groklab.run({**SPEC, "log": ["wandb"]}, out=tmp_path / "exp", progress=False)
    assert not (tmp_path / "exp").exists()


def test_a_finished_experiment_takes_new_notes_and_trackers_but_no_new_training(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    first = groklab.run(SPEC, out=out, progress=False)
    written = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    again = groklab.run({**SPEC, "notes": "seen again", "log": ["tensorboard"]}, out=out, progress=False)
    assert again.spec["notes"] == "seen again" and again.spec["log"] == ["tensorboard"]  # the stored spec took them
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")} == written  # nothing retrained
    assert again.meta["resumed_runs"] == len(first.rows) == 2
    with pytest.raises(SpecError, match="already holds another experiment"):
        groklab.run({**SPEC, "optimizer": {**SPEC["optimizer"], "lr": 0.02}}, out=out, progress=False)
