"""The rank, entropy and heavy-tail measures (measures/spectra.py, measures/htsr.py): against their papers' code run
by run (GrokkingComplexity's svd_entropy, torch's matrix_rank, WeightWatcher itself), and stacked == alone on runs
that really differ."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

from groklab import RunConfig
from groklab.engine.stack import Stack
from groklab.measures import MEASURES
from groklab.measures.htsr import beyond_bulk, esd, power_law_alpha

NEW = ["effective_rank", "spectral_entropy", "feature_rank", "htsr_alpha", "correlation_traps"]


def _stack(model: dict) -> Stack:
    config = RunConfig.model_validate({
        "task": {"modulus": 23, "train_fraction": 0.5}, "model": model,
        "optimizer": {"lr": 0.003, "weight_decay": 1.0}, "measures": {"names": NEW},
    })  # fmt: skip
    runs = [("a", config), ("b", config.model_copy(update={"seed": 1})), ("c", config.model_copy(update={"seed": 2}))]
    stack = Stack(runs, torch.device("cpu"))
    for step in range(10):
        stack.train_step(step)
    return stack


MODELS = {
    "mlp-depth-2": {"name": "mlp", "width": 400, "depth": 2, "embedding": "learned", "embedding_dim": 24},
    "transformer": {"name": "transformer", "d_model": 32, "n_heads": 2, "d_mlp": 64},
}


def _their_svd_entropy(matrix: np.ndarray) -> tuple[float, float]:
    """brantondemoss/GrokkingComplexity main.py: svd_entropy, transcribed (entropy, effective rank)."""
    s = np.linalg.svd(matrix, full_matrices=False, compute_uv=False)
    p = s / np.sum(s)
    entropy = -np.sum(p * np.log(p + 1e-9))
    return float(entropy), float(np.exp(entropy))


@pytest.mark.parametrize("model", list(MODELS))
def test_each_run_measures_as_their_code_and_as_alone(model: str) -> None:
    stack = _stack(MODELS[model])
    together = {k: v for name in NEW for k, v in MEASURES[name].fn(stack.probe(10)).items()}
    matrices = stack.model.matrices({n: p.detach() for n, p in stack.params.items()})
    x = stack.runs.x_train
    hooks = stack.model.feature_hooks
    assert {f"feature_rank.{h}" for h in hooks} <= set(together) and len(hooks) == 2
    for run in range(3):
        alone = {k: v for name in NEW for k, v in MEASURES[name].fn(stack.probe(10, run=run)).items()}
        for name, value in alone.items():
            torch.testing.assert_close(together[name][run : run + 1], value, equal_nan=True, msg=name)
        for name, W in matrices.items():
            entropy, rank = _their_svd_entropy(W[run].double().numpy())
            assert together[f"spectral_entropy.{name}"][run].item() == pytest.approx(entropy, abs=1e-5)
            assert together[f"effective_rank.{name}"][run].item() == pytest.approx(rank, rel=1e-5)
        probe = stack.probe(10, run=run)
        for hook, H in probe.activations(list(hooks), x[run : run + 1]).items():
            expected = torch.linalg.matrix_rank(H[0].T @ H[0])  # the rank of H^T H, torch's default tolerance
            assert abs(together[f"feature_rank.{hook}"][run].item() - expected.item()) <= 1, hook  # H^T H rounds
    for name in (
        "effective_rank.representation",
        f"feature_rank.{hooks[0]}",
        next(k for k in together if "alpha" in k),
    ):
        assert len(set(together[name].tolist())) > 1, f"{name}: the runs do not differ"


@pytest.fixture
def weightwatcher():  # type: ignore[no-untyped-def]
    ww = pytest.importorskip("weightwatcher")
    logging.disable(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield ww
    logging.disable(logging.NOTSET)


def _matrices() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    spikes = torch.nn.functional.pad(40 * torch.eye(3), (0, 197, 0, 297))
    return {
        "gaussian 300 x 200": torch.randn(300, 200, generator=g),
        "gaussian 128 x 128": torch.randn(128, 128, generator=g),
        "student-t 256 x 200": torch.distributions.StudentT(2.5).sample((256, 200)),
        "three spikes 300 x 200": torch.randn(300, 200, generator=g) + spikes,
        "rank 8 + noise 256 x 160": torch.randn(256, 8, generator=g) @ torch.randn(8, 160, generator=g)
        + 0.3 * torch.randn(256, 160, generator=g),
    }


def test_alpha_and_traps_are_weightwatchers(weightwatcher) -> None:  # type: ignore[no-untyped-def]
    """WeightWatcher 0.7.7's analyze(randomize=True) on each matrix as an nn.Linear: the same alpha to 1e-9, and the
    trap count on the same shuffle (numpy's global stream, seeded; matrices with M >= 100, where it shuffles once).

    The counts can differ by the bulk's variance alone: WeightWatcher fits it to a kernel density estimate of the
    shuffled spectrum, on a grid scaled by its largest eigenvalue; here it is the value a shuffle implies, 1. Where
    the bulk is Marchenko-Pastur the two agree exactly; on the Student-t matrix (entries of infinite fourth moment,
    no MP bulk) their fit gives 1.02 and one eigenvalue fewer beyond the edge."""
    torch.manual_seed(0)
    counts = {}
    for name, W in _matrices().items():
        layer = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
        layer.weight.data = W.clone()
        np.random.seed(0)
        details = weightwatcher.WeightWatcher(model=torch.nn.Sequential(layer)).analyze(randomize=True, plot=False)
        assert power_law_alpha(esd(W[None]))[0].item() == pytest.approx(details["alpha"][0], abs=1e-9), name
        np.random.seed(0)
        shuffled = W.flatten()[torch.from_numpy(np.random.permutation(W.numel()))].view(W.shape)  # their shuffle
        counts[name] = (int(beyond_bulk(esd(shuffled[None]), max(W.shape))[0]), int(details["rand_num_spikes"][0]))
    assert counts == {
        "gaussian 300 x 200": (0, 0),
        "gaussian 128 x 128": (0, 0),
        "student-t 256 x 200": (6, 5),
        "three spikes 300 x 200": (3, 3),
        "rank 8 + noise 256 x 160": (0, 0),
    }


def test_alpha_is_fitted_per_run_in_one_batch() -> None:
    stacked = torch.stack([W[:256] for W in list(_matrices().values())[2:4]])  # two runs of one shape
    together = power_law_alpha(esd(stacked))
    alone = torch.cat([power_law_alpha(esd(W[None])) for W in stacked])
    torch.testing.assert_close(together, alone)
    assert together[0] != together[1]


def test_too_few_eigenvalues_give_no_alpha() -> None:
    assert power_law_alpha(esd(torch.randn(1, 30, 19))).isnan().all()
    assert not power_law_alpha(esd(torch.randn(1, 30, 20))).isnan().any()
