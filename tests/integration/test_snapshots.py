"""Weights over training: stored as safetensors at measures.snapshot_steps, read back by step, measured later
without retraining (the same values the run recorded while it trained), and old stores (weights.pt) still read."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

import groklab
from groklab.config import SpecError
from groklab.config.specs import RENAMED
from groklab.store.recompute import recompute

from .waiting import DEADLINE

SPEC = {
    "name": "snapshots",
    "task": {"modulus": 23, "train_fraction": 0.5},
    "model": {"width": 64, "activation": "quadratic", "bias": False, "init": "gromov"},
    "optimizer": {"lr": 0.01, "weight_decay": 5.0},
    "train": {"steps": 60, "loss": "mse", "eval_every": 10},
    "measures": {"snapshot_steps": 4},
    "seeds": 2,
}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> groklab.ExperimentResult:
    return groklab.run(SPEC, out=tmp_path_factory.mktemp("ck") / "exp", progress=False)


def test_weights_are_stored_at_the_snapshot_steps_and_read_back_by_step(result: groklab.ExperimentResult) -> None:
    for run_id in result.runs["run_id"]:
        assert result.snapshot_steps(run_id) == [0, 1, 8, 60]  # 4 log-spaced steps of 60, from 0
        final = result.weights(run_id)
        assert set(final) == {"W_in", "W_out"} and final["W_in"].shape == (46, 64)
        for name, tensor in result.weights(run_id, step=60).items():
            assert torch.equal(tensor, final[name])  # the last snapshot is the final state
        start, later = result.weights(run_id, step=0), result.weights(run_id, step=8)
        assert not torch.equal(start["W_in"], later["W_in"])  # not vacuous: the weights moved between them
        stored = load_file(str(result.run_dir(run_id) / "weights" / "step-000000008.safetensors"))
        assert torch.equal(stored["W_out"], later["W_out"])  # plain safetensors, readable by any tool
    # the seeds differ, so do their weights at step 0
    first, second = result.runs["run_id"]
    assert not torch.equal(result.weights(first, step=0)["W_in"], result.weights(second, step=0)["W_in"])
    with pytest.raises(SpecError, match=r"step 5: no weights of run-0000 stored at that step; stored: 0, 1, 8, 60"):
        result.weights("run-0000", step=5)


def test_a_measure_recomputed_from_snapshots_equals_the_one_recorded_in_training(
    result: groklab.ExperimentResult,
) -> None:
    frame = recompute(result, "neuron_ipr")
    recorded = result.metrics.set_index(["run_id", "step"])["neuron_ipr_mean"]
    assert len(frame) == 8 and set(frame["step"]) == {0, 1, 8, 60}
    for _, row in frame.iterrows():
        assert row["neuron_ipr_mean"] == pytest.approx(recorded[(row["run_id"], row["step"])], rel=1e-6)
    assert frame.groupby("run_id")["neuron_ipr_mean"].apply(lambda s: s.iloc[-1] > s.iloc[0]).all()  # it moved
    stored = pd.read_parquet(result.root / "recomputed" / "neuron_ipr.parquet")
    pd.testing.assert_frame_equal(stored, frame)
    vectors = np.load(result.root / "recomputed" / "neuron_ipr.npz")
    assert vectors["run-0000/neuron_ipr"].shape == (4, 64)
    assert vectors["run-0000/neuron_ipr.steps"].tolist() == [0, 1, 8, 60]


def test_recompute_from_the_command_line_and_its_errors(result: groklab.ExperimentResult, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "groklab", *args], capture_output=True, text=True, timeout=DEADLINE
        )

    shown = cli("measures", str(result.root), "--recompute", "weight_norms")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].split()[:2] == ["run_id", "step"] and len(shown.stdout.splitlines()) == 9
    unknown = cli("measures", str(result.root), "--recompute", "bogus")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: --recompute bogus: not a measure taken over")
    bare = groklab.run({**SPEC, "measures": {}, "seeds": 1}, out=tmp_path / "bare", progress=False)
    missing = cli("measures", str(bare.root), "--recompute", "neuron_ipr")
    assert missing.returncode == 2 and "stored no weights over training" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (bare.root / "recomputed").exists()


def test_a_store_written_before_safetensors_still_reads(result: groklab.ExperimentResult, tmp_path: Path) -> None:
    old = groklab.run({**SPEC, "measures": {}, "seeds": 1}, out=tmp_path / "old", progress=False)
    run_id = old.rows[0]["run_id"]
    final = old.weights(run_id)
    (old.run_dir(run_id) / "weights.safetensors").unlink()
    torch.save(final, old.run_dir(run_id) / "weights.pt")  # what earlier versions wrote
    again = groklab.load(old.root)
    for name, tensor in again.weights(run_id).items():
        assert torch.equal(tensor, final[name])
    model, params, buffers = again.model(run_id)
    assert params["W_in"].shape == (1, 46, 64)


@pytest.mark.parametrize(
    ("steps", "message"),
    [([0, 99], r"^measures.snapshot_steps: \[99\] are not steps in 0..train.steps \(60\)$"),
     (2000, r"^measures.snapshot_steps: 2000; allowed: a list of steps, or a count 0..1000$")],
)  # fmt: skip
def test_snapshot_steps_outside_the_run_are_refused_before_anything_is_written(
    steps: list[int] | int, message: str, tmp_path: Path
) -> None:
    with pytest.raises(SpecError, match=message):
        groklab.run({**SPEC, "measures": {"snapshot_steps": steps}}, out=tmp_path / "exp", progress=False)
    assert not (tmp_path / "exp").exists()


def test_a_directory_stored_before_the_renames_reads_and_resumes(tmp_path: Path) -> None:
    """The one place old names live on: an experiment stored when snapshots were `measures.checkpoint_steps`, the
    measures' options flat (`measures.llc_lr`) and leases DIR/claims/ reads with today's names, and the same spec
    resumes it (nothing trained again)."""
    out = tmp_path / "old"
    groklab.run({**SPEC, "seeds": 1}, out=out, progress=False)
    spec = yaml.safe_load((out / "experiment.yaml").read_text())
    assert spec["measures"]["snapshot_steps"] == 4
    for old, new in RENAMED.items():  # back to the names it was stored under
        section = functools.reduce(dict.__getitem__, new.split(".")[1:-1], spec["measures"])
        spec["measures"][old.removeprefix("measures.")] = section.pop(new.rsplit(".", 1)[1])
    spec["measures"] = {k: v for k, v in spec["measures"].items() if v != {}}
    assert "llc" not in spec["measures"] and spec["measures"]["llc_lr"] == 0.003
    (out / "experiment.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (out / "claims").mkdir()  # (empty, as a finished experiment left it)
    kept = (out / "runs" / "run-0000" / "result.json").stat().st_mtime_ns
    old = groklab.load(out)
    assert old.spec["measures"]["snapshot_steps"] == 4 and "checkpoint_steps" not in old.spec["measures"]
    assert old.snapshot_steps("run-0000") == [0, 1, 8, 60]
    resumed = groklab.run({**SPEC, "seeds": 1}, out=out, progress=False)  # not "already holds another experiment"
    assert resumed.meta["state"] == "finished" and len(resumed.runs) == 1
    assert (out / "runs" / "run-0000" / "result.json").stat().st_mtime_ns == kept
    assert yaml.safe_load((out / "experiment.yaml").read_text())["measures"]["llc"]["lr"] == 0.003  # today's names
