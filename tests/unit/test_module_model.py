"""Your own torch.nn.Module (model.name module, models/module.py): stacked == alone for every layer kind whose training
differs per run, the built-in Gromov MLP's trajectory from the same network written as a module, hooks, the
structure measures, and every way a module can be wrong, refused in one line before anything is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import groklab
from groklab import RunConfig, SpecError
from groklab.data import make_data
from groklab.engine.loop import train_stack
from groklab.measures import selected
from groklab.models import build_model, reference_model

from ..user_modules import data_dependent, everything, gromov, not_a_module, raises, regressor

EVERYTHING = {
    "task": {"name": "modular", "modulus": 11, "train_fraction": 0.5},
    "model": {"name": "module", "factory": everything, "kwargs": {"p": 11}},
    "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 1.0},
    "train": {"steps": 30, "eval_every": 5, "batch_size": 16, "dtype": "float64"},
    "measures": {"names": ["weight_norms", "spectral_norms", "init_distance", "update_norm", "softmax_collapse"]},
}
"""float64: in float32, a stack whose runs differ in lr updates on the per-run path and a run alone on the shared
one, which round differently (1 ulp), and Adam turns 1 ulp into whole steps where a gradient is rounding alone: the
attention's key bias has none (softmax ignores what it adds to every score), so its Adam step is noise / (noise +
eps). float64 leaves that noise below eps."""


def _config(spec: dict, **changes: object) -> RunConfig:
    config = RunConfig.model_validate(spec)
    return config.model_copy(update=changes)


def test_a_stack_of_modules_equals_each_run_alone_with_dropout_batchnorm_layernorm_and_attention() -> None:
    base = _config(EVERYTHING)
    faster = base.optimizer.model_copy(update={"lr": 0.01})
    runs = [
        ("r0", base),
        ("r1", base.model_copy(update={"seed": 1})),
        ("r2", base.model_copy(update={"optimizer": faster})),
    ]
    together = {r.run_id: r for r in train_stack(runs)}
    for run_id, config in runs:
        (alone,) = train_stack([(run_id, config)])
        for name, value in alone.state_dict.items():  # parameters and BatchNorm's running statistics
            torch.testing.assert_close(together[run_id].state_dict[name], value, msg=f"{run_id}: {name}")
        np.testing.assert_allclose(together[run_id].metrics["train_loss"], alone.metrics["train_loss"], rtol=1e-5)
    assert "bn.running_mean" in together["r0"].state_dict
    losses = {r.final["train_loss"] for r in together.values()}
    assert len(losses) == 3  # the runs really differ: seed and learning rate reach the module


def test_dropout_masks_are_each_runs_own_and_the_global_stream_is_left_alone() -> None:
    config = _config(EVERYTHING)
    data = make_data(config.task, config.seed)
    model = build_model(config.model, data)
    assert model.draws_randomly  # type: ignore[attr-defined]
    params = {n: p[None].expand(2, *p.shape).clone() for n, p in model.init(0, torch.float64).items()}
    buffers = model.buffers([0, 0], torch.device("cpu"), torch.float64)
    x = data.x_train[None].expand(2, -1, -1)
    state = torch.get_rng_state()
    same = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)]
    other = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]
    twins = model.forward(params, x, buffers=buffers, generators=same)
    torch.testing.assert_close(twins[0], twins[1])  # the same generator: the same masks
    apart = model.forward(params, x, buffers=buffers, generators=other)
    assert not torch.allclose(apart[0], apart[1])  # another generator: other masks
    assert torch.equal(torch.get_rng_state(), state)


def test_inits_differ_per_seed_and_repeat() -> None:
    config = _config(EVERYTHING)
    model = build_model(config.model, make_data(config.task, 0))
    first, again, other = model.init(0), model.init(0), model.init(1)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not torch.equal(first["fc1.weight"], other["fc1.weight"])


GROMOV = {  # conftest's TINY_MODULAR in float64: memorizes by ~25 steps, generalizes by ~110
    "task": {"name": "modular", "modulus": 23, "train_fraction": 0.5},
    "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 5.0, "betas": [0.9, 0.98]},
    "train": {"steps": 200, "eval_every": 10, "loss": "mse", "dtype": "float64"},
    "measures": {"names": ["neuron_ipr", "large_neurons", "weight_sparsity", "init_distance"]},
}


def test_the_gromov_mlp_written_as_a_module_trains_the_built_in_trajectory_in_float64() -> None:
    builtin = RunConfig.model_validate(
        {**GROMOV, "model": {"name": "mlp", "width": 128, "activation": "quadratic", "bias": False, "init": "gromov"}}
    )
    module = {"name": "module", "factory": gromov, "kwargs": {"p": 23, "width": 128}}
    mine = RunConfig.model_validate({**GROMOV, "model": {**module, "neurons": "W_in", "neuron_output": "W_out"}})
    (ours,) = train_stack([("builtin", builtin)])
    (theirs,) = train_stack([("module", mine)])
    # To float64 rounding: the built-in gathers W_in's rows where the module multiplies one-hots (another sum order).
    for name in ("W_in", "W_out"):  # nn.Linear keeps (out, in); the built-in (in, out)
        torch.testing.assert_close(theirs.state_dict[f"{name}.weight"], ours.state_dict[name].T, rtol=1e-6, atol=1e-10)
    for column in (
        "train_loss",
        "test_loss",
        "test_acc",
        "neuron_ipr_mean",
        "large_neurons",
        "weight_sparsity",
        "init_distance",
    ):
        np.testing.assert_allclose(theirs.metrics[column], ours.metrics[column], rtol=1e-7, err_msg=column)
    assert ours.generalized_step == theirs.generalized_step is not None  # it groks, on the same step
    assert ours.metrics["test_acc"][0] < 0.2  # and the trajectory goes somewhere: from chance to generalization


def test_hooks_see_the_whole_stack_and_what_they_change_reaches_the_output() -> None:
    config = _config(EVERYTHING)
    data = make_data(config.task, 0)
    model = build_model(config.model, data)
    params = {n: torch.stack([model.init(s, torch.float64)[n] for s in (0, 1)]) for n in model.shapes()}
    buffers = model.buffers([0, 1], torch.device("cpu"), torch.float64)
    x = data.x_test[None].expand(2, -1, -1)
    logits, cache = model.run_with_cache(params, x, buffers=buffers)
    assert set(model.hook_names()) >= {"embed", "encoder", "encoder.self_attn", "attn", "ln", "fc1", "bn", "fc2"}
    for run in (0, 1):
        alone = reference_model(model, params, run, buffers)
        seen: dict[str, torch.Tensor] = {}
        alone.fc1.register_forward_hook(lambda m, i, out, seen=seen: seen.setdefault("fc1", out))
        torch.testing.assert_close(alone(x[run]), logits[run])
        torch.testing.assert_close(cache["fc1"][run], seen["fc1"])
    assert cache["fc1"].shape == (2, len(data.x_test), 32)
    assert model.readout == ("fc2.weight", "fc2.bias") and model.readout_input == "drop"
    # Zero run 1's fc1 output only: run 0 is untouched, run 1 becomes what its module gives without fc1.
    keep = torch.tensor([1.0, 0.0])[:, None, None]
    ablated = model.forward(params, x, {"fc1": lambda a: a * keep}, buffers=buffers)
    torch.testing.assert_close(ablated[0], logits[0])
    alone = reference_model(model, params, 1, buffers)
    alone.fc1.register_forward_hook(lambda m, i, out: out * 0)
    torch.testing.assert_close(ablated[1], alone(x[1]))
    assert not torch.allclose(ablated[1], logits[1])


def test_measures_that_read_structure_need_the_module_paths() -> None:
    config = _config(EVERYTHING)
    everywhere = {m.name for m in selected(config.model_copy(update={"measures": config.measures.model_copy(
        update={"names": "all"})}))}  # fmt: skip
    assert {"weight_norms", "spectral_norms", "restricted_excluded"} <= everywhere
    assert not everywhere & {"neuron_ipr", "embedding_fourier", "large_neurons", "ipr_pruning"}
    with pytest.raises(SpecError, match=r"neuron_ipr reads the network's structure; your module needs model.neurons"):
        selected(config.model_copy(update={"measures": config.measures.model_copy(update={"names": ["neuron_ipr"]})}))
    told = RunConfig.model_validate(
        {**EVERYTHING, "model": {**EVERYTHING["model"], "embedding": "embed", "neurons": "fc1", "neuron_output": "fc2"},
         "measures": {"names": ["embedding_fourier", "neuron_ipr", "large_neurons"]}}
    )  # fmt: skip
    (result,) = train_stack([("r", told)])
    for column in ("embedding_ipr", "neuron_ipr_mean", "large_neurons"):
        assert np.isfinite(result.metrics[column]).all()


def test_a_regression_module_may_return_one_prediction_per_example() -> None:
    config = RunConfig.model_validate({
        "task": {"name": "teacher", "dim": 8, "n_train": 64, "n_test": 32},
        "model": {"name": "module", "factory": regressor, "kwargs": {"d": 8}},
        "optimizer": {"name": "adamw", "lr": 0.01}, "train": {"steps": 40, "eval_every": 10, "loss": "mse"},
    })  # fmt: skip
    (result,) = train_stack([("r", config)])
    assert result.metrics["train_loss"][-1] < result.metrics["train_loss"][0]


def _spec(**model: object) -> dict:
    return {**{k: v for k, v in EVERYTHING.items() if k != "model"}, "model": {**EVERYTHING["model"], **model}}


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"factory": "no_such_package.models:make"}, r"model.factory: no_such_package.models:make does not import "
                                                     r"\(ModuleNotFoundError"),
        ({"factory": "json:no_such_function"}, r"model.factory: json:no_such_function: module json has no"),
        ({"factory": "a module"}, r"model.factory: 'a module'; allowed: 'package.module:function'"),
        ({"factory": raises, "kwargs": {}}, r"model.factory: .*raises\(\*\*model.kwargs\) raised RuntimeError: out of coffee"),
        ({"factory": not_a_module, "kwargs": {}}, r"model.factory: .*not_a_module returned a int; allowed: a torch.nn.Module"),
        ({"kwargs": {"p": 7}}, r"maps 2 examples to outputs of shape \(2, 7\); allowed: \(2, 11\)"),
        ({"factory": data_dependent, "kwargs": {}}, r"module cannot be stacked \(run under torch.func.vmap"),
        ({"readout": "fc9"}, r"model.readout: 'fc9' is not a submodule of the module; allowed: embed, encoder"),
        ({"neurons": "bn", "neuron_output": "fc2"}, r"model.neurons: bn is a BatchNorm1d; allowed: an nn.Linear"),
        ({"neurons": "fc1"}, r"model.neurons and model.neuron_output: give both"),
        ({"factory": lambda: None}, r"has no importable name"),
    ],
    ids=["no-import", "no-function", "malformed", "raises", "not-a-module", "wrong-outputs", "not-stackable",
         "no-submodule", "neurons-not-linear", "neurons-alone", "lambda"],
)  # fmt: skip
def test_a_module_that_cannot_train_is_refused_in_one_line_before_anything_is_written(
    model: dict, message: str, tmp_path: Path
) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        groklab.run(_spec(**model), out=tmp_path / "out", progress=False)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


MODULE_FILE = """
import torch
from torch import nn


def make(p, width):
    return nn.Sequential(nn.Embedding(p, 16), nn.Flatten(), nn.Linear(32, width), nn.ReLU(), nn.Linear(width, p))
"""


def test_a_spec_beside_its_module_file_trains_in_worker_processes_and_records_the_code(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "my_models.py").write_text(MODULE_FILE)
    spec = {
        "name": "mine",
        "task": {"name": "modular", "modulus": 11, "train_fraction": 0.5},
        "model": {"name": "module", "factory": "my_models:make", "kwargs": {"p": 11, "width": 32}},
        "optimizer": {"name": "adamw", "lr": 0.003},
        "train": {"steps": 20, "eval_every": 10},
        "sweep": {"model.kwargs.width": [16, 32]},  # two stacks: one per worker process
    }
    (folder / "spec.yaml").write_text(json.dumps(spec))
    command = [sys.executable, "-m", "groklab", "run", str(folder / "spec.yaml"), "--out", str(tmp_path / "out")]
    done = subprocess.run([*command, "--workers", "2", "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = groklab.load(tmp_path / "out")
    assert sorted(r["status"] for r in result.runs.to_dict("records")) == ["completed", "completed"]
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["plan"]["workers"] == 2
    digest = __import__("hashlib").sha256((folder / "my_models.py").read_bytes()).hexdigest()
    assert meta["code"] == [{"factory": "my_models:make", "file": str((folder / "my_models.py").resolve()),
                             "sha256": digest}]  # fmt: skip
    html = groklab.report(tmp_path / "out")
    assert "my_models:make" in Path(html).read_text() and digest in Path(html).read_text()
    (folder / "spec.yaml").write_text(json.dumps({**spec, "model": {**spec["model"], "factory": "my_model:make"}}))
    refused = subprocess.run(command[:-1] + [str(tmp_path / "other")], cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith("error: model.factory: my_model:make does not import")
    assert not (tmp_path / "other").exists()
