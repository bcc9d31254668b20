"""The Recursive Feature Machine (models/rfm.py) against Mallinar et al.'s code, iteration by iteration, and stacked ==
alone on runs that really differ; its place in groklab: a spec, a stack, measures, a report, errors in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

import groklab
from groklab import RunConfig, SpecError
from groklab.engine.stack import Stack

SPEC = {
    "task": {"name": "modular", "operation": "add", "modulus": 13, "train_fraction": 0.6},
    "model": {"name": "rfm", "bandwidth": 2.5},
    "train": {"steps": 6, "loss": "mse", "eval_every": 1, "dtype": "float64"},
}


def _their_iterations(X: np.ndarray, y: np.ndarray, X_te: np.ndarray, y_te: np.ndarray, p: int, iters: int,
                      L: float = 2.5) -> list[tuple[np.ndarray, np.ndarray, float, float]]:  # fmt: skip
    """nmallinar/rfm-grokking train_kernel.py's loop (gaussian kernel, ridge 0, centering, agop_power 1/2) and
    models/gaussian_kernel.py's get_grads, transcribed: (M used, alpha, train acc, test acc) per iteration."""

    def gaussian_M(samples: np.ndarray, centers: np.ndarray, M: np.ndarray) -> np.ndarray:
        s_norm = np.sum((samples @ M) * samples, axis=1, keepdims=True)
        c_norm = np.sum((centers @ M) * centers, axis=1, keepdims=True).reshape(1, -1)
        d = -2 * samples @ (M @ centers.T) + s_norm + c_norm
        return np.exp(-np.clip(d, 0, None) / (2 * L**2))

    Y, M, out = np.eye(p)[y], np.eye(X.shape[1]), []
    for _ in range(iters):
        K = gaussian_M(X, X, M)
        sol = np.linalg.solve(K, Y)
        train_acc = float(np.mean((K.T @ sol).argmax(-1) == y))
        test_acc = float(np.mean((gaussian_M(X, X_te, M).T @ sol).argmax(-1) == y_te))
        out.append((M.copy(), sol, train_acc, test_acc))
        n, c, d = len(X), p, X.shape[1]  # get_grads(X, sol.T, L, M, K=K, centering=True, x=X)
        step1 = (sol.reshape(n, c, 1) @ (X @ M).reshape(n, 1, d)).reshape(-1, c * d)
        step2 = (K.T @ step1).reshape(-1, c, d)
        step3 = (sol.T @ K).T.reshape(n, c, 1) @ (X @ M).reshape(n, 1, d)
        G = (step2 - step3) * -1 / L**2
        G = G - G.mean(0)
        M = np.real(scipy.linalg.sqrtm(np.einsum("ncd,nce->de", G, G) / n))
    return out


def test_each_iteration_is_their_codes() -> None:
    config = RunConfig.model_validate(SPEC)
    stack = Stack([("a", config)])
    x, y = stack.runs.x_train[0].numpy(), stack.runs.y_train[0].numpy()
    theirs = _their_iterations(x, y, stack.runs.x_test[0].numpy(), stack.runs.y_test[0].numpy(), 13, 12)
    for step, (M, alpha, train_acc, test_acc) in enumerate(theirs):
        stack.train_step(step)
        evaluation = stack.evaluate()  # train loss, train acc, test loss, test acc, weight norm
        # scipy's sqrtm (a Schur method) and eigh round a near-singular AGOP's root differently: ~5e-9, not growing
        np.testing.assert_allclose(stack.params["M"][0].detach().numpy(), M, rtol=0, atol=2e-8)
        np.testing.assert_allclose(stack.params["alpha"][0].detach().numpy(), alpha, rtol=1e-6, atol=1e-6)
        assert (evaluation[1, 0].item(), evaluation[3, 0].item()) == pytest.approx((train_acc, test_acc))
    assert theirs[-1][3] > 0.1 > theirs[0][3]  # test accuracy rose along the way: the match is not vacuous


def test_a_stack_fits_each_run_as_alone() -> None:
    config = RunConfig.model_validate(SPEC)
    other = config.model_copy(update={"seed": 1})  # another split (a stack shares its model keys: engine/plan.py)
    stack, alone = Stack([("a", config), ("b", other)]), [Stack([("a", config)]), Stack([("b", other)])]
    for step in range(4):
        for s in (stack, *alone):
            s.train_step(step)
    for i, single in enumerate(alone):
        for name, value in stack.params.items():
            torch.testing.assert_close(value[i], single.params[name][0], rtol=1e-9, atol=1e-10, msg=name)
    assert not torch.allclose(stack.params["M"][0], stack.params["M"][1])


def test_an_rfm_experiment_is_a_groklab_experiment(tmp_path: Path) -> None:
    """Seeds, a sweep, events, measures of the learned metric, the store and the report, as for a network."""
    spec = {**SPEC, "name": "rfm-small", "seeds": 2, "sweep": {"model.bandwidth": [2.0, 2.5]},
            "train": {**SPEC["train"], "steps": 12},
            "measures": {"names": ["weight_norms", "effective_rank", "update_norm", "embedding_fourier"],
                         "snapshot_steps": [1, 6, 12]}}  # fmt: skip
    groklab.run(spec, out=tmp_path / "out", progress=False)
    result = groklab.load(tmp_path / "out")
    assert len(result.runs) == 4 and result.runs["memorized_step"].notna().all()
    assert {"effective_rank.M", "update_norm", "norm.M"} <= set(result.metrics.columns)
    from groklab.figures import applicable

    assert "rfm_features" in applicable(result) and "neurons" not in applicable(result)
    drawn = groklab.plot(result, ["rfm_features"])["rfm_features"]
    assert [ax.get_title().split(":")[0] for ax in drawn.axes] == ["step 6", "step 12"]  # step 1: M is still I
    groklab.report(tmp_path / "out")
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("changes", "says"),
    [({"train": {**SPEC["train"], "batch_size": 32}}, r"train.batch_size: 32 with model rfm"),
     ({"train": {**SPEC["train"], "loss": "cross_entropy"}}, r"train.loss: cross_entropy with model rfm"),
     ({"task": {"name": "parity", "n_bits": 8, "k": 2, "n_train": 50}}, r"model.name: rfm reads one-hot tokens"),
     ({"measures": {"names": ["neuron_ipr"]}}, r"neuron_ipr reads .*neurons.*, which model rfm has not"),
     ({"model": {"name": "rfm", "bandwidth": 0}}, r"model.bandwidth")],
    ids=["minibatch", "cross-entropy", "vector-inputs", "neuron-measure", "zero-bandwidth"],
)  # fmt: skip
def test_what_a_kernel_machine_cannot_do_is_one_line(changes: dict, says: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=says) as error:
        groklab.run({**SPEC, **changes}, out=tmp_path / "out", progress=False)
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()
