"""Prieto et al. 2025: StableMax against its formula and hand-computed values, ⊥Grad against the reference
projection through torch.optim run by run, and the softmax-collapse measures on hand-made logits."""

from __future__ import annotations

import math

import pytest
import torch

from groklab import OptimizerConfig
from groklab.engine.optim import StackOptimizer, hyperparameters
from groklab.losses import per_example_loss, stablemax


def test_stablemax_by_hand() -> None:
    logits = torch.tensor([[[2.0, 0.0, -3.0], [0.5, 0.5, 0.5]]])  # s = 3, 1, 1/4 and 1.5 x 3
    probabilities = stablemax(logits.double())
    torch.testing.assert_close(probabilities[0, 0], torch.tensor([3, 1, 0.25], dtype=torch.float64) / 4.25)
    torch.testing.assert_close(probabilities[0, 1], torch.full((3,), 1 / 3, dtype=torch.float64))
    loss = per_example_loss(logits, torch.tensor([[0, 2]]), "stablemax")
    assert loss.dtype == torch.float64  # computed in float64 whatever the logits' dtype
    torch.testing.assert_close(loss, torch.tensor([[-math.log(3 / 4.25), math.log(3)]], dtype=torch.float64))


def test_stablemax_does_not_collapse_where_softmax_does() -> None:
    """A logit gap of 200: float32 softmax is exactly one-hot (loss 0, gradient 0); StableMax still pulls."""
    logits = torch.tensor([[[200.0, 0.0, 0.0]]], requires_grad=True)
    y = torch.tensor([[0]])
    cross_entropy = per_example_loss(logits, y, "cross_entropy")
    assert cross_entropy.item() == 0.0
    (grad,) = torch.autograd.grad(cross_entropy.sum(), logits)
    assert (grad == 0).all()
    stable = per_example_loss(logits, y, "stablemax")
    assert stable.item() == pytest.approx(math.log(203 / 201))  # s = 201, 1, 1
    (grad,) = torch.autograd.grad(stable.sum(), logits)
    assert grad[0, 0, 0] < 0


def _reference_orthograd(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """orthograd.py's projection, written from its formula: one parameter tensor, one run."""
    w, g = w.reshape(-1), g.reshape(-1)
    g_perp = g - (torch.dot(w, g) / (torch.dot(w, w) + 1e-30)) * w
    return g_perp * (g.norm(2) / (g_perp.norm(2) + 1e-30))


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_orthogonal_gradients_follow_the_reference_run_by_run(name: str) -> None:
    torch.manual_seed(0)
    base = OptimizerConfig(name=name, lr=1e-2, weight_decay=0.1)
    configs = [
        base.model_copy(update={"orthogonal": True}),
        base,
        base.model_copy(update={"orthogonal": True, "lr": 3e-2}),
    ]
    start = {"W": torch.randn(3, 4, 5, dtype=torch.float64), "b": torch.randn(3, 5, dtype=torch.float64)}
    stacked = {n: t.clone() for n, t in start.items()}
    optimizer = StackOptimizer(name, stacked, hyperparameters(configs, torch.device("cpu"), torch.float64))
    torch_class = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    references = []
    for i, c in enumerate(configs):
        params = [torch.nn.Parameter(start[n][i].clone()) for n in ("W", "b")]
        references.append((params, torch_class(params, lr=c.lr, weight_decay=c.weight_decay), c.orthogonal))
    for step in range(10):
        grads = {n: torch.randn_like(t) for n, t in start.items()}
        optimizer.step(stacked, grads, step)
        for i, (params, opt, orthogonal) in enumerate(references):
            for p, n in zip(params, ("W", "b")):
                g = grads[n][i].clone()
                p.grad = _reference_orthograd(p.detach(), g).view_as(g) if orthogonal else g
            opt.step()
    for i, (params, _, _) in enumerate(references):
        for p, n in zip(params, ("W", "b")):
            torch.testing.assert_close(stacked[n][i], p.detach(), rtol=1e-10, atol=1e-12)
    # Not vacuous: run 0 (projected) and run 1 (plain) start alike and end apart.
    assert (stacked["W"][0] - stacked["W"][1]).abs().max() > 1e-3


def test_a_projected_gradient_is_orthogonal_to_the_weights_and_keeps_its_norm() -> None:
    from groklab.engine.gradients import orthogonalize

    w, g = torch.randn(2, 7, dtype=torch.float64), torch.randn(2, 7, dtype=torch.float64)
    out = orthogonalize({"W": w}, {"W": g}, torch.tensor([True, False]))["W"]
    assert (out[0] * w[0]).sum().abs() < 1e-12
    torch.testing.assert_close(out[0].norm(), g[0].norm())
    assert torch.equal(out[1], g[1])  # a run without ⊥Grad keeps its gradient


def test_the_collapse_measures_on_a_stack_with_large_logits() -> None:
    """Scaled-up weights give large logit gaps: the measures equal their definitions computed by hand."""
    from groklab import RunConfig
    from groklab.engine.stack import Stack
    from groklab.measures import MEASURES

    config = RunConfig.model_validate(
        {
            "task": {"name": "modular", "modulus": 11, "train_fraction": 0.5},
            "model": {"width": 16, "init_scale": 40.0},
            "train": {"steps": 1, "loss": "cross_entropy"},
            "measures": {"names": ["softmax_collapse"]},
        }
    )
    stack = Stack([("a", config), ("b", config.model_copy(update={"seed": 1}))])
    stack.evaluate()
    out = MEASURES["softmax_collapse"].fn(stack.probe(step=0))
    logits, y = stack.eval_logits[0], stack.runs.y_train
    for run in range(2):
        z = logits[run]
        collapsed = [(torch.exp(row - row.max()).sum() == 1).item() for row in z]
        zero = [torch.nn.functional.cross_entropy(row[None], label[None]).item() == 0 for row, label in zip(z, y[run])]
        assert out["softmax_collapse"][run].item() == pytest.approx(sum(collapsed) / len(z))
        assert out["zero_loss_terms"][run].item() == pytest.approx(sum(zero) / len(z))
        assert out["logit_norm"][run].item() == pytest.approx(z.norm(dim=1).mean().item(), rel=1e-6)
    assert 0 < out["softmax_collapse"].min() and out["softmax_collapse"].max() < 1  # some rows collapse, not all
