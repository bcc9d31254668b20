"""Liu et al.'s effective theory (measures/liu.py) against the reference code's own procedure, re-run here
step by step: null dimensions from the eigenvalues of A^T A (< 1e-8), implied parallelograms by adding one row
at a time, Dbar by looping over test x train examples — on random training sets of the toy model's p = 10."""

from __future__ import annotations

import numpy as np
import pytest

from groklab.measures import liu


def _reference_ideal(p: int, train: np.ndarray) -> tuple[float, int]:
    """toy/train_add.py's Task 1, as written there (sets of pairs, eigh null dimensions)."""
    pairs = [tuple(x) for x in liu.examples(p).tolist()]
    n = len(pairs)
    P0 = [{pairs[i], pairs[j]} for i in range(n) for j in range(i + 1, n) if sum(pairs[i]) == sum(pairs[j])]
    A = []
    for par in P0:
        (i, j), (m, k) = list(par)  # two distinct examples
        row = np.zeros(p)
        row[i] += 1
        row[j] += 1
        row[m] -= 1
        row[k] -= 1
        A.append(row)
    A = np.array(A)
    index = {pair: u for u, pair in enumerate(pairs)}
    in_d = [k for k, par in enumerate(P0) if all(index[x] in set(train.tolist()) for x in par)]

    def null_dim(rows: list[int]) -> int:
        mat = A[rows] if rows else np.zeros((0, p))
        return int(np.sum(np.linalg.eigh(mat.T @ mat)[0] < 1e-8))

    base = null_dim(in_d)
    PD = [P0[k] for k in in_d] + [P0[k] for k in range(len(P0)) if k not in in_d and null_dim(in_d + [k]) == base]
    test = sorted(set(range(n)) - set(train.tolist()))
    dbar = list(train)
    for u in test:
        for v in train:
            if {pairs[u], pairs[v]} in PD:
                dbar.append(u)
                break
    return (len(dbar) - len(train)) / len(test), base


@pytest.mark.parametrize("size", [10, 20, 30, 45])
def test_ideal_accuracy_and_freedom_match_the_reference_procedure(size: int) -> None:
    rng = np.random.default_rng(size)
    for _ in range(3):
        train = rng.choice(55, size, replace=False)
        expected, null_dim = _reference_ideal(10, train)
        assert liu.ideal_accuracy(10, train) == expected
        assert liu.implied(10, train)[1] == null_dim


def test_more_training_examples_never_lower_the_ideal_accuracy_and_it_reaches_one() -> None:
    rng = np.random.default_rng(0)
    order = rng.permutation(55)
    accuracies = [liu.ideal_accuracy(10, order[:k]) for k in range(5, 55, 5)]
    assert accuracies[-1] == 1.0 and accuracies[0] < 1.0
    freedoms = [liu.implied(10, order[:k])[1] for k in range(5, 55, 5)]
    assert freedoms == sorted(freedoms, reverse=True) and freedoms[-1] == 2  # only translation and scale left


def test_a_linear_representation_holds_every_parallelogram_and_a_perturbed_one_fewer() -> None:
    linear = 3.0 * np.arange(10.0)[:, None] + 1.0
    assert liu.rqi(linear) == 1.0 and liu.holding(10, linear).all()
    bent = linear.copy()
    bent[4] += 2.0  # one integer out of place: every parallelogram through 4 breaks
    assert 0 < liu.rqi(bent) < 1
    broken = ~liu.holding(10, bent)
    P0, _ = liu.parallelograms(10)
    through_4 = np.array([4 in liu.examples(10)[list(par)] for par in P0])
    assert (broken == through_4).all()
    # With every parallelogram holding, a test example is predicted iff some training example has its sum.
    train = np.arange(0, 55, 2)
    sums = liu.examples(10).sum(axis=1)
    test = np.setdiff1d(np.arange(55), train)
    expected = np.isin(sums[test], sums[train]).mean()
    assert liu.predicted_accuracy(10, train, linear) == expected >= liu.ideal_accuracy(10, train)
    assert liu.predicted_accuracy(10, train, bent) < expected
