"""Zhong et al.'s clock-or-pizza measures (measures/pizza.py) against a per-pair computation on each run's oracle,
and the structural fact behind them: with constant attention (rate 0) a 1-layer transformer treats a and b alike."""

from __future__ import annotations

import cmath
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import groklab
from groklab import RunConfig, SpecError
from groklab.data import modular_table
from groklab.engine.stack import Stack
from groklab.measures import MEASURES, Probe
from groklab.measures.pizza import distance_irrelevance
from groklab.models import reference_model


def _probe(rate: float) -> Probe:
    config = RunConfig.model_validate({
        "task": {"modulus": 7, "train_fraction": 0.8},
        "model": {"name": "transformer", "d_model": 16, "n_heads": 2, "d_mlp": 32, "attention": "full",
                  "attention_rate": rate},
        "optimizer": {"lr": 0.01, "weight_decay": 1.0}, "train": {"dtype": "float64"},
    })  # fmt: skip
    stack = Stack([("a", config), ("b", config.model_copy(update={"seed": 1}))], torch.device("cpu"))
    for step in range(20):
        stack.train_step(step)
    return Probe(step=20, params=stack.params, model=stack.model, configs=stack.runs.configs, data=stack.runs.data,
                 init_params=stack.runs.init_params, stacked={"x_train": stack.runs.x_train})  # fmt: skip


@pytest.mark.parametrize("rate", [1.0, 0.4])
def test_the_measures_equal_each_runs_oracle_pair_by_pair(rate: float) -> None:
    probe = _probe(rate)
    measured = MEASURES["clock_pizza"].fn(probe)
    pairs, answers = modular_table(probe.config.task)  # type: ignore[arg-type]
    pairs, answers = torch.from_numpy(pairs), torch.from_numpy(answers)
    tokens = probe.model.prepare(pairs)
    for run in range(2):
        oracle = reference_model(probe.model, probe.params, run)
        embedded: dict[str, torch.Tensor] = {}
        oracle.embed.register_forward_hook(lambda m, i, out, e=embedded: e.setdefault("x", out.requires_grad_()))
        right = oracle(tokens).gather(1, answers[:, None])[:, 0]  # (n,)
        (grad,) = torch.autograd.grad(right.sum(), embedded["x"])  # (n, pos, d_model)
        cosines = torch.nn.functional.cosine_similarity(grad[:, 0], grad[:, 1], dim=-1)
        torch.testing.assert_close(measured["gradient_symmetricity"][run], cosines.mean())
        q = distance_irrelevance(right.detach()[None], pairs, 7)[0]
        torch.testing.assert_close(measured["distance_irrelevance"][run], q)
    assert not torch.allclose(measured["gradient_symmetricity"][0], measured["gradient_symmetricity"][1])


def _their_circularity(W_E: np.ndarray, p: int, first_k: int = 4) -> float:
    """eval-main.ipynb's "Circularity" cell, transcribed: PCA scores (sklearn's fit_transform is U S of the centered
    matrix), each normalized, summed against e^{2 pi i t / p} at every multiplier i, the best i kept."""
    centered = W_E - W_E.mean(axis=0)
    U, S, _ = np.linalg.svd(centered, full_matrices=False)
    scores = U * S
    total = 0.0
    for ix in range(first_k):
        vs = scores[:, ix] / np.sqrt(np.sum(scores[:, ix] ** 2)) / math.sqrt(p)
        best = max(abs(sum(vs[t * i % p] * cmath.exp(2j * math.pi * t / p) for t in range(p))) ** 2 * 2
                   for i in range(1, p))  # fmt: skip
        total += max(min(best, 1.0), 0.0)
    return total / first_k


def test_circularity_is_their_notebooks_per_run() -> None:
    probe = _probe(1.0)
    measured = MEASURES["clock_pizza"].fn(probe)["circularity"]
    W_E, _ = probe.operand_embeddings()
    for run in range(2):
        assert measured[run].item() == pytest.approx(_their_circularity(W_E[run].detach().numpy(), 7), abs=1e-9)
    assert abs(measured[0] - measured[1]) > 1e-3


def test_constant_attention_makes_the_gradients_in_a_and_b_equal() -> None:
    """Rate 0: the "=" position reads x_= + W_O sum_k W_V x_k, symmetric in x_a and x_b: symmetricity exactly 1."""
    assert torch.allclose(MEASURES["clock_pizza"].fn(_probe(0.0))["gradient_symmetricity"], torch.ones(2).double())
    assert (MEASURES["clock_pizza"].fn(_probe(1.0))["gradient_symmetricity"] < 0.999).all()


@pytest.mark.parametrize(
    ("model", "says"),
    [({"name": "mlp", "attention_rate": 0.0}, r"model.attention_rate: unknown key"),
     ({"name": "transformer", "attention_rate": 1.5}, r"model.attention_rate"),
     ({"name": "transformer", "positional": "rotary", "d_model": 12, "n_heads": 4}, r"d_head 3 is odd"),
     ({"name": "transformer", "mlp": "swiglu"}, r"model.mlp")],
    ids=["rate-on-an-mlp", "rate-above-1", "rotary-odd-head", "unknown-mlp"],
)  # fmt: skip
def test_an_option_that_does_not_fit_the_model_is_one_line(model: dict, says: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=says) as error:
        groklab.run({"model": model, "train": {"steps": 2}}, out=tmp_path / "out", progress=False)
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()
