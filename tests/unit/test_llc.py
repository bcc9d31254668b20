"""The llc measure: devinterp's estimator on each run's own module, reproducible from the run's seed, equal in a
stack and alone, leaving the global RNG alone; chosen by name only."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from devinterp.optim.sgld import SGLD
from devinterp.slt.sampler import estimate_learning_coeff_with_summary
from devinterp.utils import evaluate_ce
from torch.utils.data import DataLoader, TensorDataset

from groklab import RunConfig, Stack
from groklab.config import SpecError
from groklab.engine.loop import train_stack
from groklab.measures import MEASURES, selected
from groklab.models import reference_model
from groklab.seeds import derive_seed

SPEC = {
    "task": {"modulus": 11, "train_fraction": 0.5},
    "model": {"embedding": "learned", "embedding_dim": 6, "width": 16, "activation": "gelu"},
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"steps": 40, "batch_size": 16, "loss": "cross_entropy", "eval_every": 20, "dtype": "float64"},
    "measures": {"names": ["llc"], "llc": {"draws": 30, "batch_size": 16}},
}


def _config(seed: int, **optimizer: float) -> RunConfig:
    return RunConfig.model_validate({**SPEC, "seed": seed, "optimizer": {**SPEC["optimizer"], **optimizer}})


def test_the_measure_is_devinterps_estimate_on_the_runs_module() -> None:
    stack = Stack([("r", _config(3))])
    probe = stack.probe(20)
    state, numpy_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    (value,) = MEASURES["llc"].fn(probe)["llc"].tolist()
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generators are left as they were
    assert (np.random.get_state()[1] == numpy_state).all()
    seed = derive_seed(3, "llc", 20) % 2**31
    data = TensorDataset(stack.runs.x_train[0], stack.runs.y_train[0])
    loader = DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(seed))
    direct = estimate_learning_coeff_with_summary(
        reference_model(stack.model, probe.params, 0, probe.buffers), loader=loader, evaluate=evaluate_ce,
        sampling_method=SGLD, optimizer_kwargs={"lr": 3e-3, "nbeta": 2.0, "localization": 5.0}, num_chains=1,
        num_draws=30, seed=seed, online=False, verbose=False,
    )  # fmt: skip
    assert value == pytest.approx(float(direct["llc/mean"]), rel=1e-5)
    assert MEASURES["llc"].fn(stack.probe(20))["llc"].item() == pytest.approx(value, rel=1e-6)  # reproducible


def test_a_stack_of_runs_measures_each_as_alone() -> None:
    runs = [("a", _config(0)), ("b", _config(1, weight_decay=0.5))]
    stacked = {r.run_id: r for r in train_stack(runs)}
    for run_id, config in runs:
        (alone,) = train_stack([(run_id, config)])
        assert stacked[run_id].metrics["llc"] == pytest.approx(alone.metrics["llc"], rel=1e-9, abs=1e-12)
    assert stacked["a"].metrics["llc"][1:] != pytest.approx(stacked["b"].metrics["llc"][1:], rel=1e-3)  # they differ


def test_llc_is_chosen_by_name_only_and_refused_without_devinterp(monkeypatch: pytest.MonkeyPatch) -> None:
    everything = RunConfig.model_validate({**SPEC, "measures": {"names": "all"}})
    assert "llc" not in [m.name for m in selected(everything)]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "devinterp" else real(name, *a))
    with pytest.raises(
        SpecError, match=r"^measures.names: llc needs devinterp; install it with: pip install 'groklab\[llc\]'$"
    ):
        selected(_config(0))
