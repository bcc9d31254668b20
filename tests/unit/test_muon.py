"""Muon over a stack (optimizer.name muon, engine/muon.py): pinned run by run to torch.optim.Muon on each hidden
matrix (in torch's (out, in) layout) and torch.optim.AdamW on the rest, with per-run settings; stacked == alone
through the engine; and a Muon key on another optimizer is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import groklab
from groklab import OptimizerConfig, RunConfig, SpecError
from groklab.data import make_data
from groklab.engine.loop import train_stack
from groklab.engine.muon import MuonOptimizer, lr_scale, muon_layout
from groklab.engine.optim import hyperparameters
from groklab.models import build_model

TRANSFORMER = {
    "task": {"name": "modular", "modulus": 11},
    "model": {"name": "transformer", "d_model": 16, "n_heads": 2, "d_mlp": 32, "layernorm": "pre"},
}
PARITY = {"task": {"name": "parity", "n_bits": 10, "k": 2, "n_train": 64, "n_test": 32},
          "model": {"name": "mlp", "width": 24, "depth": 3}}  # fmt: skip


def _configs(**muon: object) -> list[OptimizerConfig]:
    first = OptimizerConfig.model_validate({"name": "muon", "lr": 0.003, "weight_decay": 0.1, "betas": [0.9, 0.98],
                                            "muon": {"lr": 0.02, "weight_decay": 0.05, **muon}})  # fmt: skip
    second = first.model_copy(update={"lr": 0.001, "muon": first.muon.model_copy(update={"lr": 0.05, "momentum": 0.8,
                                                                                         "weight_decay": 0.0})})  # fmt: skip
    return [first, second]


@pytest.mark.parametrize("runs", [1, 2], ids=["a-run-alone", "a-stack-of-two"])
@pytest.mark.parametrize("spec", [TRANSFORMER, PARITY], ids=["transformer", "deep-mlp"])
@pytest.mark.parametrize("muon", [{}, {"nesterov": False, "adjust_lr": "match_rms_adamw", "ns_steps": 3}],
                         ids=["reference-defaults", "options"])  # fmt: skip
def test_each_run_follows_torch_muon_on_its_matrices_and_adamw_on_the_rest(spec: dict, muon: dict, runs: int) -> None:
    """Alone, a run follows torch.optim.Muon to float32 rounding. In a stack the bfloat16 matmuls are batched, and
    CPU kernels sum a batch's products in another order than one matrix's: now and then an entry rounds to the
    neighbouring bfloat16 (2^-8 of it) and the iteration carries that on, so the stack is held to that bound: a
    bfloat16 ulp of the largest step, per step. A wrong layout, scale or momentum breaks either by far more."""
    config = RunConfig.model_validate(spec)
    model = build_model(config.model, make_data(config.task, 0))
    start = {n: torch.stack([model.init(seed)[n] for seed in range(runs)]) for n in model.shapes()}
    stacked = {n: t.clone() for n, t in start.items()}
    indices = {n: torch.arange(p[0].numel()).view(p.shape[1:])[None] for n, p in stacked.items()}
    layout = muon_layout(model.matrices(indices), {*model.embeddings, *model.readout})
    assert layout and set(layout) < set(stacked)  # some parameters go to Muon, some to AdamW
    configs = _configs(**muon)[:runs]
    hyper = hyperparameters(configs, torch.device("cpu"), torch.float32)
    optimizer = MuonOptimizer(configs, stacked, hyper, layout)
    references = []
    for run, c in enumerate(configs):
        # Each matrix as torch lays out a Linear's weight, (out, in): the matrix (in, out) transposed.
        matrices = {n: torch.nn.Parameter(start[n][run].flatten()[i].T.clone()) for n, i in layout.items()}
        others = {n: torch.nn.Parameter(start[n][run].clone()) for n in start if n not in layout}
        muon_opt = torch.optim.Muon(list(matrices.values()), lr=c.muon.lr, weight_decay=c.muon.weight_decay or 0.0,
                                    momentum=c.muon.momentum, nesterov=c.muon.nesterov, ns_steps=c.muon.ns_steps,
                                    adjust_lr_fn=None if c.muon.adjust_lr == "original" else c.muon.adjust_lr)  # fmt: skip
        adamw = torch.optim.AdamW(list(others.values()), lr=c.lr, weight_decay=c.weight_decay, betas=c.betas)
        references.append((matrices, others, muon_opt, adamw))
    torch.manual_seed(0)
    for step in range(6):
        grads = {n: torch.randn_like(p) for n, p in stacked.items()}
        optimizer.step(stacked, grads, step)
        for run, (matrices, others, muon_opt, adamw) in enumerate(references):
            for n, p in matrices.items():
                p.grad = grads[n][run].flatten()[layout[n]].T.clone()
            for n, p in others.items():
                p.grad = grads[n][run].clone()
            muon_opt.step()
            adamw.step()
    for run, (matrices, others, _, _) in enumerate(references):
        for n, p in matrices.items():
            c, (fan_in, fan_out) = configs[run].muon, layout[n].shape
            bound = 1e-6 if runs == 1 else 6 * c.lr * lr_scale(fan_in, fan_out, c.adjust_lr) * 2**-8  # 6 steps
            difference = (stacked[n][run].flatten()[layout[n]].T - p.detach()).abs().max()
            assert difference <= bound, (n, run, difference)
        for n, p in others.items():
            torch.testing.assert_close(stacked[n][run], p.detach(), rtol=1e-6, atol=1e-7)
    assert not torch.allclose(stacked[next(iter(layout))], start[next(iter(layout))])  # it moved


SPEC = {
    "task": {"name": "modular", "modulus": 23, "train_fraction": 0.5},
    "model": {"name": "transformer", "d_model": 32, "n_heads": 4, "d_mlp": 64, "layernorm": "pre"},
    "optimizer": {"name": "muon", "lr": 0.003, "weight_decay": 1.0, "betas": [0.9, 0.98], "muon": {"lr": 0.02}},
    "train": {"steps": 40, "eval_every": 10, "dtype": "float64"},
    "measures": {"names": ["weight_norms", "update_norm"]},
}


def test_a_stack_of_muon_runs_trains_as_each_run_alone() -> None:
    """In float64: a stack's forward pass rounds otherwise than one run's, and in float32 those ulps reach the
    bfloat16 iteration's input, where some round the other way (a 0.4% step in that entry)."""
    config = RunConfig.model_validate(SPEC)
    other = config.optimizer.model_copy(update={"muon": config.optimizer.muon.model_copy(update={"lr": 0.05})})
    runs = [("a", config), ("b", config.model_copy(update={"seed": 1})), ("c", config.model_copy(
        update={"optimizer": other}))]  # fmt: skip
    together = {r.run_id: r for r in train_stack(runs)}
    for run_id, c in runs:
        (alone,) = train_stack([(run_id, c)])
        for name, value in alone.state_dict.items():
            torch.testing.assert_close(together[run_id].state_dict[name], value, rtol=1e-7, atol=1e-9)
    assert len({r.final["train_loss"] for r in together.values()}) == 3
    assert together["a"].final["train_loss"] < together["a"].metrics["train_loss"][0]


@pytest.mark.parametrize(
    ("optimizer", "says"),
    [({"name": "adamw", "muon": {"lr": 0.1}}, r"optimizer.muon: Muon's settings are for optimizer.name muon"),
     ({"muon": {"ns_steps": 0}}, r"optimizer.muon.ns_steps"),
     ({"muon": {"adjust_lr": "sideways"}}, r"optimizer.muon.adjust_lr")],
    ids=["muon-key-on-adamw", "no-steps", "unknown-rule"],
)  # fmt: skip
def test_a_muon_key_that_does_not_fit_is_one_line(optimizer: dict, says: str, tmp_path: Path) -> None:
    spec = {**SPEC, "optimizer": {**SPEC["optimizer"], **optimizer}}
    with pytest.raises(SpecError, match=says) as error:
        groklab.run(spec, out=tmp_path / "out", progress=False)
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()
