"""Checkpoints and exact resume: a stack interrupted at any step and resumed from its checkpoint gives the
same runs, bit for bit, as one trained without interruption — metrics, events, measures and weights — for
the MLP and the transformer, full batch and minibatch, with dropout, an event-triggered switch and measures,
interrupted before memorization, between, and after a run left the stack; and after a crash (no checkpoint
at the crash) it resumes from the last periodic one."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from groklab import RunConfig
from groklab.engine import interrupt
from groklab.engine.checkpoint import Checkpoint, DamagedCheckpoint, fingerprint, load, read_header, save
from groklab.engine.listener import Listener
from groklab.engine.loop import train_stack
from groklab.engine.result import RunResult
from groklab.store.checkpoints import Checkpoints

from ..user_modules import everything

MLP_FULL = {  # Gromov's MLP on (a + b) mod 23: memorizes by ~25 steps, generalizes by ~110
    "task": {"name": "modular", "modulus": 23, "train_fraction": 0.5},
    "model": {"name": "mlp", "width": 128, "activation": "quadratic", "bias": False, "init": "gromov"},
    "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 5.0, "betas": [0.9, 0.98]},
    "train": {"steps": 200, "eval_every": 5, "loss": "mse"},
    "measures": {"names": ["neuron_ipr", "weight_norms", "update_norm"]},
}
MLP_SHRINK = {**MLP_FULL, "task": {**MLP_FULL["task"], "on_generalized": {"train_fraction": 0.2}}}
"""The same, each run's training set shrinking to 20% of the pairs once it generalizes (Varma et al.)."""
PARITY_MINIBATCH = {
    "task": {"name": "parity", "n_bits": 12, "k": 2, "n_train": 96, "n_test": 32, "label_noise": 0.05},
    "model": {"name": "mlp", "width": 32, "dropout": 0.1},
    "optimizer": {
        "name": "sgd",
        "lr": 0.1,
        "momentum": 0.5,
        "weight_decay": 0.01,
        "on_generalized": {"weight_decay": 0.05},
    },
    "train": {"steps": 150, "eval_every": 10, "batch_size": 32},
}
TRANSFORMER = {
    "task": {"name": "modular", "modulus": 11, "train_fraction": 0.5},
    "model": {
        "name": "transformer",
        "d_model": 16,
        "n_heads": 2,
        "d_mlp": 32,
        "n_layers": 2,
        "dropout": 0.1,
        "sequence": "a op b =",
        "layernorm": "pre",
    },  # fmt: skip
    "optimizer": {"name": "adamw", "lr": 0.005, "weight_decay": 1.0, "warmup_steps": 5},
    "train": {"steps": 60, "eval_every": 10, "batch_size": 16},
}


MODULE = {
    "task": {"name": "modular", "modulus": 11, "train_fraction": 0.5},
    "model": {"name": "module", "factory": everything, "kwargs": {"p": 11}},
    "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 1.0},
    "train": {"steps": 60, "eval_every": 5, "batch_size": 16},
}
"""A user's module with attention, LayerNorm, BatchNorm statistics and dropout masks, each run its own, minibatched."""


NADAM = {**MLP_FULL, "optimizer": {"name": "torch", "class": "torch.optim.NAdam", "lr": 0.01, "weight_decay": 1e-4,
                                   "kwargs": {"betas": [0.9, 0.98], "decoupled_weight_decay": True}}}  # fmt: skip
"""The same with a torch.optim class: each run's instance state (moments, step, mu_product) in the checkpoint."""
MUON = {**TRANSFORMER, "optimizer": {"name": "muon", "lr": 0.003, "weight_decay": 1.0, "muon": {"lr": 0.02}}}
"""Transformers with Muon's momentum buffers next to AdamW's moments."""
RFM = {"task": {"name": "modular", "modulus": 13, "train_fraction": 0.6}, "model": {"name": "rfm"},
       "train": {"steps": 14, "loss": "mse", "eval_every": 1, "dtype": "float64"},
       "measures": {"names": ["feature_circulant", "update_norm"]}}  # fmt: skip
"""A kernel machine fitted in closed form (models/rfm.py): its feature matrix carries the state."""


def _runs(spec: dict, **train: object) -> list[tuple[str, RunConfig]]:
    """Three runs of a stack; the second stops 10 steps after generalizing, so it can leave the stack early."""
    base = RunConfig.model_validate({**spec, "train": {**spec["train"], **train}})
    early = base.model_copy(update={"seed": 1, "train": base.train.model_copy(update={"stop_after_generalized": 10})})
    lr = base.optimizer.model_copy(update={"lr": base.optimizer.lr * 1.5})
    return [("r0", base), ("r1", early), ("r2", base.model_copy(update={"seed": 2, "optimizer": lr}))]


class Interrupting(Listener):
    """Keeps the stack's checkpoints in one file (as the runner does) and its finished runs; asks to stop (as Ctrl-C
    does) or crashes (as kill -9 does) after the n-th evaluation."""

    def __init__(self, path: Path | None, stop_after: int | None, crash_after: int | None) -> None:
        self.path, self.stop_after, self.crash_after = path, stop_after, crash_after
        self.checkpoints = path is not None
        self.results: list[RunResult] = []
        self.evaluations = 0

    def on_checkpoint(self, checkpoint: Checkpoint, progress: list[RunResult]) -> None:
        assert self.path is not None
        save(self.path, checkpoint)
        assert {r.status for r in progress} <= {"running", "interrupted"} and [
            r.run_id for r in progress
        ] == checkpoint.ids

    def on_run_done(self, result: RunResult) -> None:
        self.results.append(result)

    def on_progress(self, steps: int, milestones: list[tuple[str, str]]) -> None:
        self.evaluations += 1
        if self.evaluations == self.stop_after:
            interrupt.request(signal.SIGINT)
        if self.evaluations == self.crash_after:
            raise RuntimeError("crash")


def _train(runs: list[tuple[str, RunConfig]], path: Path | None = None, stop_after: int | None = None,
           crash_after: int | None = None, device: str = "cpu") -> list[RunResult]:  # fmt: skip
    """Train (resuming from the checkpoint at `path`, if there is one), asking to stop or crashing after the n-th
    evaluation."""
    listener = Interrupting(path, stop_after, crash_after)
    try:
        train_stack(runs, device, listener, resume=load(path) if path is not None and path.is_file() else None)
    except (KeyboardInterrupt, RuntimeError):
        pass
    else:
        if path is not None:
            path.unlink(missing_ok=True)  # done: the runner removes it (tests/integration/test_faults.py)
    finally:
        interrupt.clear()
    return listener.results


def _assert_identical(resumed: list[RunResult], reference: list[RunResult]) -> None:
    got, expected = {r.run_id: r for r in resumed}, {r.run_id: r for r in reference}
    assert sorted(got) == sorted(expected)
    for run_id, ref in expected.items():
        run = got[run_id]
        assert (run.status, run.steps, run.memorized_step, run.generalized_step) == (
            ref.status, ref.steps, ref.memorized_step, ref.generalized_step)  # fmt: skip
        assert run.metrics.keys() == ref.metrics.keys()
        for name, values in ref.metrics.items():
            np.testing.assert_array_equal(run.metrics[name], values, err_msg=f"{run_id} {name}")
        assert run.state_dict.keys() == ref.state_dict.keys()
        assert all(torch.equal(run.state_dict[n], ref.state_dict[n]) for n in ref.state_dict), run_id
        assert run.series.keys() == ref.series.keys()
        assert all(np.array_equal(run.series[n], ref.series[n]) for n in ref.series)
        assert run.events == ref.events and run.analysis == ref.analysis
    assert len({r.final["train_loss"] for r in reference}) == len(reference)  # the runs really differ


@pytest.mark.parametrize(("spec", "stops"), [(MLP_FULL, [2, 12, 36]), (PARITY_MINIBATCH, [1, 5, 11]),
                                             (TRANSFORMER, [1, 3, 5]), (MLP_SHRINK, [12, 30]), (MODULE, [1, 4, 9]),
                                             (NADAM, [2, 12, 36]), (MUON, [1, 3, 5]), (RFM, [2, 6, 11])],
                         ids=["mlp-full-batch", "parity-minibatch-dropout-switch", "transformer-minibatch-dropout",
                              "mlp-training-set-shrinks", "user-module-batchnorm-dropout",
                              "torch-optim-nadam", "transformer-muon", "rfm-closed-form"])  # fmt: skip
def test_an_interrupted_stack_resumes_bit_identically(
    spec: dict, stops: list[int], tmp_path: Path, device: str
) -> None:
    runs = _runs(spec)
    reference = _train(runs, device=device)
    left_early = [r for r in reference if r.status == "stopped"]
    for stop in stops:
        path = tmp_path / f"stop-{stop}.pt"
        before = _train(runs, path, stop_after=stop, device=device)
        assert path.is_file(), "Ctrl-C checkpoints the stack before stopping"
        remaining = [(run_id, c) for run_id, c in runs if run_id not in {r.run_id for r in before}]
        assert read_header(path).ids == [run_id for run_id, _ in remaining]  # the runs left in the stack
        after = _train(remaining, path, device=device)
        _assert_identical(before + after, reference)
    if spec is PARITY_MINIBATCH:  # a run switched its weight decay (at generalizing) before the last interruption
        assert any(r.generalized_step is not None and r.generalized_step < stops[-1] * 10 for r in reference)
    if spec is MLP_SHRINK:  # interrupted before the training sets shrank, and after
        shrunk = [r.events["shrunk_step"] for r in reference if r.events["shrunk_step"] is not None]
        assert len(shrunk) == 3 and stops[0] * 5 < min(shrunk) and max(shrunk) < stops[1] * 5
    if spec is MLP_FULL:  # interrupted before memorization, between, and after a run left the stack
        memorized = min(r.memorized_step for r in reference)
        assert stops[0] * 5 < memorized < stops[1] * 5 and left_early[0].steps < stops[2] * 5


def test_a_crash_resumes_from_the_last_periodic_checkpoint(tmp_path: Path) -> None:
    runs = _runs(MLP_FULL, checkpoint_every=7)
    reference = _train(runs)
    path = tmp_path / "stack.pt"
    before = _train(runs, path, crash_after=9)  # evaluations every 5 steps: crash at step 40, last save at 35
    assert path.is_file()
    assert read_header(path).step == load(path).step == 35
    remaining = [(run_id, c) for run_id, c in runs if run_id not in {r.run_id for r in before}]
    _assert_identical(before + _train(remaining, path), reference)


def test_a_checkpoint_of_other_runs_is_refused(tmp_path: Path) -> None:
    runs = _runs(MLP_FULL)
    path = tmp_path / "stack.pt"
    _train(runs, path, stop_after=2)
    with pytest.raises(ValueError, match="does not fit the stack"):
        train_stack(runs[:2], resume=load(path))


def test_a_damaged_checkpoint_is_detected_never_resumed_from(tmp_path: Path) -> None:
    runs = _runs(MLP_FULL)
    path = tmp_path / "stack.pt"
    _train(runs, path, stop_after=12)
    data = bytearray(path.read_bytes())
    header = read_header(path)
    data[len(data) // 2] ^= 0xFF  # one flipped bit pattern in the payload
    path.write_bytes(bytes(data))
    assert read_header(path) == header  # the header says whose it is without reading the payload...
    with pytest.raises(DamagedCheckpoint, match="checksum mismatch"):
        load(path)  # ... which is checked before it is unpickled
    path.write_bytes(bytes(data[: len(data) // 3]))  # truncated, as a full disk leaves it: the header tells
    with pytest.raises(DamagedCheckpoint, match="cut short"):
        read_header(path)
    path.write_bytes(b"PK" + bytes(data[2:]))  # not ours (a zip, as checkpoints of an older format were)
    with pytest.raises(DamagedCheckpoint, match="not a groklab checkpoint"):
        read_header(path)


def test_a_checkpoint_resumes_only_into_the_runs_it_was_saved_from(tmp_path: Path) -> None:
    """Its header's fingerprint (the runs' resolved configs, the groklab version) must be the runs': a checkpoint
    of width-32 runs copied into a width-16 experiment, or one past the runs' budget, is a warning and a restart."""
    runs = _runs(MLP_FULL)
    checkpoints = Checkpoints(tmp_path)
    path = checkpoints.path(runs)
    _train(runs, path, stop_after=2)
    members, resumed = checkpoints.resume(runs, finished=set())
    assert resumed is not None and members == runs and path.is_file()  # the same runs: resumed
    wider = [(run_id, c.model_copy(update={"model": c.model.model_copy(update={"width": 32})})) for run_id, c in runs]
    with pytest.warns(UserWarning, match="saved from runs with other settings or by another groklab version; its runs"):
        members, resumed = checkpoints.resume(wider, finished=set())
    assert resumed is None and members == wider and not path.exists()  # the whole stack again, from step 0
    with pytest.raises(ValueError, match="does not fit the stack"):  # and the engine never takes it
        train_stack(wider, resume=Checkpoint([r for r, _ in runs], 10, fingerprint(runs), {}))
    save(path, Checkpoint([r for r, _ in runs], 10**6, fingerprint(runs), {}))
    with pytest.warns(UserWarning, match="at step 1000000, past its runs' budget"):
        assert checkpoints.resume(runs, finished=set()) == (runs, None)
