"""Progress measures against hand-computed values, and stacked == per run."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch

from groklab import RunConfig, SpecError
from groklab.engine.loop import train_stack
from groklab.engine.stack import Stack
from groklab.measures import MEASURES, analytic_accuracy, gromov_solution, selected
from groklab.measures.analytic import compare
from groklab.measures.curve_events import nanda_phases, run_events
from groklab.measures.fourier import gini, ipr, logit_components, power_spectrum, restricted_excluded

from ..conftest import TINY_MODULAR

TRANSFORMER = {"name": "transformer", "d_model": 32, "n_heads": 4, "d_mlp": 64}


def _config(**changes: Any) -> RunConfig:
    data = copy.deepcopy(TINY_MODULAR)
    for key, value in changes.items():  # section__name, or section__measure__option
        *path, name = key.split("__")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node[name] = value
    return RunConfig.model_validate(data)


# -- Fourier formulas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [7, 10, 23])
def test_power_spectrum_is_parseval(p: int) -> None:
    f = torch.randn(5, p, dtype=torch.float64)
    total = (f - f.mean(-1, keepdim=True)).square().sum(-1)
    assert torch.allclose(power_spectrum(f).sum(-1), total)


@pytest.mark.parametrize("p", [11, 23, 97])
def test_ipr_of_a_pure_cosine_is_one_and_of_a_delta_is_flat(p: int) -> None:
    n = torch.arange(p, dtype=torch.float64)
    cosine = torch.cos(2 * math.pi * 3 * n / p + 0.7)
    delta = torch.zeros(p, dtype=torch.float64)
    delta[4] = 1.0
    assert ipr(power_spectrum(cosine)).item() == pytest.approx(1.0)
    assert ipr(power_spectrum(delta)).item() == pytest.approx(1 / ((p - 1) / 2))


def test_gini_of_uniform_is_zero_and_of_one_hot_is_maximal() -> None:
    assert gini(torch.full((8,), 3.0)).item() == pytest.approx(0.0)
    one_hot = torch.zeros(8)
    one_hot[2] = 5.0
    assert gini(one_hot).item() == pytest.approx(7 / 8)
    assert gini(torch.tensor([1.0, 2.0, 3.0, 4.0])).item() == pytest.approx(0.25)  # sum|xi-xj| / (2 n^2 mean)


def _table(p: int) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = (g.ravel() for g in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))
    return torch.stack([a, b], 1), (a + b) % p


def test_restricted_loss_of_a_pure_fourier_circuit_equals_the_full_loss() -> None:
    p, keys = 23, [3, 7]
    pairs, labels = _table(p)
    s = labels
    c = torch.arange(p)
    angle = 2 * math.pi * (s[:, None] - c[None, :]).double() / p
    logits = sum(4.0 * torch.cos(k * angle) for k in keys)[None]  # (run 1, p*p, C)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(p * p, generator=generator)
    train, test = order[: p * p // 3].sort().values[None], order[p * p // 3 :].sort().values[None]
    full_test = torch.nn.functional.cross_entropy(logits[0, test[0]], labels[test[0]])
    restricted, excluded = restricted_excluded(
        logits, s, p, torch.tensor([keys]), train, labels[train], test, labels[test], "cross_entropy"
    )
    assert restricted.item() == pytest.approx(full_test.item(), rel=1e-9)
    assert excluded.item() == pytest.approx(math.log(p), rel=1e-9)  # nothing left: uniform prediction
    # The components sit exactly at the key frequencies.
    cos, sin = logit_components(logits, s, p)
    power = (cos.square() + sin.square()).sum(-1)[0]
    assert set((power > 1e-9).nonzero().flatten().add(1).tolist()) == set(keys)


# -- Gromov's analytic solution -------------------------------------------------------------------------


@pytest.mark.parametrize("p", [7, 23, 97])
def test_analytic_solution_is_exact_periodic_and_matches_itself(p: int) -> None:
    solution = gromov_solution(p, width=8 * p, seed=1)
    assert analytic_accuracy(solution, p) == 1.0
    spectra = power_spectrum(solution["W_in"][:p].T) + power_spectrum(solution["W_in"][p:].T)
    assert ipr(spectra).min().item() == pytest.approx(1.0)
    assert compare(solution["W_in"], solution["W_out"], p) == pytest.approx(
        {"periodic_share": 1.0, "frequency_match": 1.0, "phase_match": 1.0}
    )
    random = {n: torch.randn_like(w) for n, w in solution.items()}
    far = compare(random["W_in"], random["W_out"], p)
    # Random weights spread their power over the (p-1)/2 frequencies (only 3 for p = 7).
    assert far["periodic_share"] < 0.5 + 2 / p and far["frequency_match"] < 0.2


def test_trained_gromov_mlp_approaches_the_analytic_solution() -> None:
    results = train_stack([("r", _config(train__stop_after_generalized=50))])
    analysis = results[0].analysis
    assert results[0].generalized_step is not None
    assert analysis["analytic_acc"] == 1.0
    assert analysis["frequency_match"] > 0.9 and analysis["phase_match"] > 0.9


# -- stacked == per run ---------------------------------------------------------------------------------


CASES = {
    "gromov-mlp": {"measures__names": "all", "task__label_noise": 0.1},
    "transformer": {"model": TRANSFORMER, "train__loss": "cross_entropy", "measures__names": "all"},
    "learned-sub": {"task__operation": "sub", "model__embedding": "learned", "measures__names": "all"},
    "seed003-sequence": {"model__embedding": "learned", "model__sequence": "a op b =", "measures__names": "all"},
    "one-hot-sequence": {"model__sequence": "a op b =", "measures__names": "all"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_measure_stacked_equals_per_run(case: str) -> None:
    changes = dict(CASES[case])
    model = changes.pop("model", None)
    config = _config(**changes)
    if model is not None:
        config = RunConfig.model_validate({**config.model_dump(), "model": model})
    runs = [(f"r{seed}", config.model_copy(update={"seed": seed})) for seed in (0, 1, 2)]
    stack = Stack(runs, torch.device("cpu"))
    for step in range(5):
        stack.train_step(step)
    measures = [m for m in selected(config) if m.when == "eval"]
    together = {k: v for m in measures for k, v in m.fn(stack.probe(5)).items()}
    assert {"neuron_ipr_mean", "embedding_gini", "large_neurons", "init_distance"} <= set(together)
    for i in range(3):
        alone = {k: v for m in measures for k, v in m.fn(stack.probe(5, run=i)).items()}
        for name, value in alone.items():
            torch.testing.assert_close(together[name][i : i + 1], value, equal_nan=True, msg=f"{case}: {name}")


# -- weights, corruption, parity ------------------------------------------------------------------------


def test_weight_measures_on_hand_set_weights() -> None:
    config = _config(measures__weight_sparsity__threshold=0.5, measures__large_neurons__fraction=0.5)
    stack = Stack([("r", config)], torch.device("cpu"))
    W_in, W_out = stack.params["W_in"], stack.params["W_out"]  # (1, 46, 128), (1, 128, 23)
    with torch.no_grad():
        W_in.fill_(0.0)
        W_out.fill_(1.0)
        W_in[0, :, :10] = 3.0  # neurons 0..9: norm sqrt(46 * 9 + 23); the rest: sqrt(23)
    probe = stack.probe(0)
    values = {
        k: v
        for name in ("weight_norms", "weight_sparsity", "large_neurons")
        for k, v in MEASURES[name].fn(probe).items()
    }
    assert values["norm.W_out"].item() == pytest.approx(math.sqrt(128 * 23))
    assert values["norm.W_in"].item() == pytest.approx(math.sqrt(46 * 10 * 9))
    assert values["last_layer_norm"].item() == pytest.approx(math.sqrt(128 * 23))
    assert values["weight_sparsity"].item() == pytest.approx((46 * 118) / (46 * 128 + 128 * 23))
    assert values["large_neurons"].item() == 10
    distance = MEASURES["init_distance"].fn(probe)["init_distance"].item()
    expected = sum((probe.params[n] - probe.init_params[n]).square().sum() for n in probe.params).sqrt().item()
    assert distance == pytest.approx(expected) and distance > 0


def test_corruption_accuracy_of_a_constant_predictor() -> None:
    config = _config(task__label_noise=0.3)
    stack = Stack([("r", config)], torch.device("cpu"))
    with torch.no_grad():
        stack.params["W_out"].zero_()  # every logit 0: argmax predicts class 0 everywhere
    values = MEASURES["corruption_accuracy"].fn(stack.probe(0))
    data = stack.runs.data[0]
    corrupted, given, true = data.corrupted, data.y_train, data.y_train_clean
    assert values["clean_acc"].item() == pytest.approx((given[~corrupted] == 0).double().mean().item())
    assert values["corrupted_acc"].item() == pytest.approx((given[corrupted] == 0).double().mean().item())
    assert values["corrupted_true_acc"].item() == pytest.approx((true[corrupted] == 0).double().mean().item())


def test_parity_clustering_is_one_for_a_function_of_the_relevant_bits() -> None:
    config = RunConfig.model_validate(
        {"task": {"name": "parity", "n_bits": 10, "k": 2, "coordinates": [1, 4], "n_train": 50, "n_test": 200}}
    )
    stack = Stack([("r", config)], torch.device("cpu"))
    probe = stack.probe(0)
    x = probe.stacked["x_test"]
    probe.representations = lambda inputs: torch.stack([x[..., 1] * 2 + x[..., 4], x[..., 1]], -1)  # type: ignore
    assert MEASURES["parity_clustering"].fn(probe)["parity_clustering"].item() == pytest.approx(1.0)
    probe.representations = lambda inputs: x[..., 6:9]  # type: ignore  # irrelevant bits only
    assert MEASURES["parity_clustering"].fn(probe)["parity_clustering"].item() < 0.1


def test_rqi_counts_parallelograms_by_brute_force() -> None:
    config = _config(model__embedding="learned", model__embedding_dim=4, measures__rqi__delta=1e-6)
    stack = Stack([("r", config)], torch.device("cpu"))
    with torch.no_grad():  # E_i = i v: i + j = m + n preserved exactly unless the sum wraps around mod p
        stack.params["W_E"].copy_(torch.arange(23.0)[None, :, None] * torch.tensor([1.0, -2.0, 0.5, 3.0]))
    probe = stack.probe(0)
    train = probe.table_pairs[probe.table_rows[0][0]].tolist()
    kept = total = 0
    for i, j in train:
        for m, n in train:
            if (i, j) != (m, n) and (i + j - m - n) % 23 == 0:
                total += 1
                kept += i + j == m + n
    assert MEASURES["rqi"].fn(probe)["rqi"].item() == pytest.approx(kept / total)


# -- events and the recorder ----------------------------------------------------------------------------


def test_nanda_phases_on_synthetic_curves() -> None:
    steps = np.arange(0, 100, 10)
    excluded = np.array([1e-1, 1e-3, 5e-4, 3e-3, 1e-2, 1e-1, 1.0, 2.0, 2.0, 2.0])
    test = np.array([5.0, 6.0, 6.0, 6.0, 6.0, 5.0, 1.0, 0.02, 0.011, 0.010])
    restricted = np.array([5.0, 5.0, 4.0, 2.0, 0.5, 0.05, 0.01, 0.01, 0.01, 0.01])
    phases = nanda_phases(steps, test, restricted, excluded, memorized=10)
    # The excluded loss is lowest at 20 after memorizing at 10; log(test / restricted) peaks at 50
    # (ln 100); it is back below 0.1 ln 100 = 0.46 first at 80 (ln 1.1; at 70 it is ln 2 = 0.69).
    assert phases == {"circuit_formation_step": 20, "cleanup_step": 50, "cleanup_end_step": 80}
    assert nanda_phases(steps, test, restricted, excluded, memorized=None)["cleanup_step"] is None


def test_run_events_peak_and_delay() -> None:
    history = {"step": [0, 10, 20, 30], "train_loss": [1.0, 0.1, 0.01, 0.01], "test_loss": [1.0, 3.0, 2.0, 0.1]}
    history |= {"train_acc": [0.1, 1.0, 1.0, 1.0], "test_acc": [0.0, 0.1, 0.5, 1.0]}
    events = run_events(history, memorized=10, generalized=30)
    assert events["test_loss_peak_step"] == 10 and events["grokking_delay"] == 20
    assert events["loss_spike_steps"] == []
    assert (events["fit_step"], events["generalize_step"], events["liu_phase"]) == (10, 30, "comprehension")


def test_update_norm_is_the_size_of_the_next_step() -> None:
    config = _config(train__steps=3, train__eval_every=1, measures__names=["update_norm"])
    result = train_stack([("r", config)])[0]
    stack = Stack([("r", config)], torch.device("cpu"))
    sizes = []
    for step in range(3):
        before = {n: p.detach().clone() for n, p in stack.params.items()}
        stack.train_step(step)
        sizes.append(math.sqrt(sum((stack.params[n].detach() - before[n]).square().sum().item() for n in before)))
    assert result.metrics["update_norm"][:3] == pytest.approx(sizes, rel=1e-5)
    assert math.isnan(result.metrics["update_norm"][3])  # the last evaluation has no next step


def test_measures_every_and_representations_are_recorded() -> None:
    config = _config(
        train__steps=20,
        measures__names=["neuron_ipr", "representations"],
        measures__every=2,
        measures__representations__steps=[7, 20],
        measures__representations__inputs=16,
    )
    result = train_stack([("r", config)])[0]
    steps = result.metrics["step"]
    assert 7 in steps  # representation steps join the schedule
    measured = [s for s, v in zip(steps, result.metrics["neuron_ipr_mean"]) if not math.isnan(v)]
    assert measured == steps[::2]
    assert result.series["representations"].shape == (2, 16, 128)
    assert result.series["representations.steps"].tolist() == [7, 20]
    assert result.series["neuron_ipr"].shape == (len(measured), 128)


def test_the_listing_the_cli_prints_is_the_registry() -> None:
    """`groklab measures` reads measures/listing.json (so it need not import torch): it must say what the registry
    holds. After adding or changing a measure: python -c 'from groklab.measures.registry import write_listing;
    write_listing()'."""
    from groklab.cli import measure_listing
    from groklab.measures.registry import listing

    assert measure_listing() == listing()
    assert set(listing()) == set(MEASURES)


def test_a_list_may_start_with_the_defaults_and_add_to_them() -> None:
    defaults = [m.name for m in selected(_config())]
    more = [m.name for m in selected(_config(measures__names=["default", "effective_rank", "weight_norms"]))]
    assert more == [*defaults, "effective_rank"] and "effective_rank" not in defaults
    with pytest.raises(SpecError, match=r"measures.names: default in a list; allowed: default first"):
        selected(_config(measures__names=["effective_rank", "default"]))
