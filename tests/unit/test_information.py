"""The O-information measure (measures/information.py) against Clauw et al.'s estimator run by run: their gcmi.py's
copula normalization and bias-corrected Gaussian entropy (ent_g), transcribed, on every subset a definition needs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.special
import torch

from groklab import RunConfig
from groklab.engine.stack import Stack
from groklab.measures import MEASURES
from groklab.measures.information import copula_normal, o_information, ward_clusters


def _their_copnorm(x: np.ndarray) -> np.ndarray:
    """gcmi.py: copnorm (ranks along the last axis, scaled into (0, 1), through ndtri)."""
    ranks = np.argsort(np.argsort(np.atleast_2d(x)))
    return scipy.special.ndtri((ranks + 1).astype(float) / (ranks.shape[-1] + 1))


def _their_ent_g(x: np.ndarray) -> float:
    """gcmi.py: ent_g(x, biascorrect=True), rows variables, columns samples, in bits."""
    x = np.atleast_2d(x)
    n_samples, n_vars = x.shape[1], x.shape[0]
    x = x - x.mean(axis=1)[:, None]
    chol = np.linalg.cholesky(x @ x.T / float(n_samples - 1))
    entropy = np.sum(np.log(np.diagonal(chol))) + 0.5 * n_vars * (np.log(2 * np.pi) + 1.0)
    psi = scipy.special.psi((n_samples - np.arange(1, n_vars + 1).astype(float)) / 2.0) / 2.0
    entropy = entropy - n_vars * (np.log(2) - np.log(n_samples - 1.0)) / 2.0 - psi.sum()
    return float(entropy / np.log(2))


def _their_o_information(normal: np.ndarray) -> float:
    """Omega = (m - 2) H(S) + sum_j [H(X_j) - H(S \\ j)], each entropy by ent_g (oinfo_jax_original.py's formula)."""
    m = normal.shape[0]
    rest = [np.delete(normal, j, axis=0) for j in range(m)]
    return (m - 2) * _their_ent_g(normal) + sum(_their_ent_g(normal[j]) - _their_ent_g(rest[j]) for j in range(m))


def test_omega_is_their_definition_on_every_subset_of_correlated_neurons() -> None:
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(200, 1, generator=g, dtype=torch.float64)
    raw = torch.cat([shared + 0.5 * torch.randn(200, 3, generator=g, dtype=torch.float64),  # redundant trio
                     torch.randn(200, 2, generator=g, dtype=torch.float64)], dim=1)  # fmt: skip
    total = raw[:, 3] + raw[:, 4] + 0.1 * torch.randn(200, generator=g, dtype=torch.float64)  # two, only jointly
    raw = torch.cat([raw, total[:, None]], dim=1)  # (200 samples, 6 neurons): the last three synergistic
    normal = copula_normal(raw[None])[0]
    np.testing.assert_allclose(normal.numpy(), _their_copnorm(raw.T.numpy()).T, atol=1e-12)
    centered = normal - normal.mean(0)
    covariance = centered.T @ centered / 199
    values = []
    for size in range(2, 7):
        for subset in itertools.combinations(range(6), size):
            ours = o_information(covariance[list(subset)][:, list(subset)], 200).item()
            assert ours == pytest.approx(_their_o_information(normal[:, list(subset)].T.numpy()), abs=1e-9), subset
            values.append(ours)
    assert min(values) < -0.1 < 0.1 < max(values)  # both synergy and redundancy are among the cases


def test_a_stack_measures_each_run_as_alone() -> None:
    config = RunConfig.model_validate({
        "task": {"modulus": 11, "train_fraction": 0.6},
        "model": {"name": "mlp", "width": 24, "activation": "relu"},
        "optimizer": {"lr": 0.01}, "measures": {"names": ["o_information"], "o_information": {"clusters": 3}},
    })  # fmt: skip
    stack = Stack([("a", config), ("b", config.model_copy(update={"seed": 1}))])
    for step in range(20):
        stack.train_step(step)
    together = MEASURES["o_information"].fn(stack.probe(20))
    for run in range(2):
        alone = MEASURES["o_information"].fn(stack.probe(20, run=run))
        for name, value in alone.items():
            torch.testing.assert_close(together[name][run : run + 1], value, msg=name)
    assert not torch.allclose(together["o_information"][0], together["o_information"][1])
    assert (together["o_information_synergy"] <= together["o_information_redundancy"]).all()


def test_ward_clusters_are_scipys_cut() -> None:
    """linkage(method="ward") cut by fcluster(maxclust=k), as Clauw et al.'s AgglomerativeClustering(linkage="ward"):
    the same partitions of ReLU-like features (groups that fire alike, and noise) at every k tried."""
    from scipy.cluster.hierarchy import fcluster, linkage

    g = torch.Generator().manual_seed(1)
    sources = torch.randn(300, 4, generator=g, dtype=torch.float64)
    features = (
        sources.repeat_interleave(6, dim=1) + 0.7 * torch.randn(300, 24, generator=g, dtype=torch.float64)
    ).relu()
    for k in (2, 3, 5, 8):
        labels = fcluster(linkage(features.T.numpy(), method="ward"), t=k, criterion="maxclust")
        theirs = sorted([int(j) for j in (labels == c).nonzero()[0]] for c in set(labels))
        assert ward_clusters(features, k) == theirs, k


def test_a_singular_multiplet_has_no_omega() -> None:
    """Two neurons with the same ranks (dead ReLUs: the copula breaks their ties alike) make C singular."""
    twins = torch.tensor([[1.0, 1.0, 0.2], [1.0, 1.0, 0.2], [0.2, 0.2, 1.0]], dtype=torch.float64)
    assert o_information(twins, 100).isnan() and o_information(torch.eye(3, dtype=torch.float64), 100).isfinite()
