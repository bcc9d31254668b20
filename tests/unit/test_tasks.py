"""Tasks against their definitions: operations, parity labels, splits, label noise, the group S5."""

from __future__ import annotations

import numpy as np
import pytest

from groklab import ModularTask, ParityTask, PermutationTask, RunConfig, make_data
from groklab.data import modular_table, operation_table
from groklab.data.dataset import corrupt_labels
from groklab.data.permutation import compose, inverse, permutation_table, permutations

FORMULAS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "x2+y2": lambda a, b: a**2 + b**2,
    "x2+xy+y2": lambda a, b: a**2 + a * b + b**2,
    "x2+xy+y2+x": lambda a, b: a**2 + a * b + b**2 + a,
    "x3+xy": lambda a, b: a**3 + a * b,
    "x3+xy2+y": lambda a, b: a**3 + a * b**2 + b,
}


@pytest.mark.parametrize("operation", sorted(FORMULAS))
def test_operations_match_their_formulas(operation: str) -> None:
    p = 13
    pairs, labels = operation_table(operation, p)
    assert len(pairs) == p * p
    for (a, b), label in zip(pairs.tolist(), labels.tolist()):
        assert label == FORMULAS[operation](a, b) % p


@pytest.mark.parametrize("p", [5, 7, 97])
def test_division_inverts_multiplication(p: int) -> None:
    pairs, labels = operation_table("div", p)
    assert len(pairs) == p * (p - 1)  # b = 0 excluded
    assert (pairs[:, 1] != 0).all()
    # label = a / b  <=>  label * b = a (mod p): division is not multiplication in disguise.
    assert ((labels * pairs[:, 1]) % p == pairs[:, 0]).all()
    assert not (labels == (pairs[:, 0] * pairs[:, 1]) % p).all()


def test_modular_split_is_disjoint_complete_and_sized() -> None:
    task = ModularTask(operation="add", modulus=11, train_fraction=0.3)
    data = make_data(task, seed=4)
    train, test = data.info["train_index"], data.info["test_index"]
    assert len(train) == round(0.3 * 121) and len(test) == 121 - len(train)
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(121))
    pairs, labels = operation_table("add", 11)
    assert (data.x_train.numpy() == pairs[train]).all() and (data.y_test.numpy() == labels[test]).all()


def test_splits_depend_on_the_seed_only() -> None:
    task = ModularTask(modulus=11, train_fraction=0.5)
    a, b, c = make_data(task, 0), make_data(task, 0), make_data(task, 1)
    assert (a.info["train_index"] == b.info["train_index"]).all()
    assert not np.array_equal(a.info["train_index"], c.info["train_index"])
    noisy = make_data(task.model_copy(update={"label_noise": 0.2}), 0)
    assert (noisy.info["train_index"] == a.info["train_index"]).all()  # noise does not move the split


def test_holdout_labels_go_to_the_test_set() -> None:
    task = ModularTask(operation="add", modulus=7, train_fraction=1.0, holdout_labels=[1, 2])
    data = make_data(task, 0)
    assert set(data.y_test.tolist()) == {1, 2} and len(data.y_test) == 14
    assert not set(data.y_train.tolist()) & {1, 2} and len(data.y_train) == 49 - 14


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37])
def test_label_noise_changes_exactly_the_stated_fraction(fraction: float) -> None:
    data = make_data(ModularTask(modulus=13, train_fraction=0.6, label_noise=fraction), seed=2)
    changed = (data.y_train != data.y_train_clean).numpy()
    assert changed.sum() == round(fraction * len(changed))
    assert (changed == data.corrupted.numpy()).all()
    assert (data.y_test.numpy() < 13).all()


def test_corrupted_labels_are_uniform_over_the_other_classes() -> None:
    labels = np.zeros(30_000, dtype=np.int64)
    noisy, mask = corrupt_labels(labels, 1.0, 4, np.random.default_rng(0))
    assert mask.all() and (noisy != 0).all()
    counts = np.bincount(noisy, minlength=4)[1:] / len(noisy)
    assert np.allclose(counts, 1 / 3, atol=0.01)


def test_parity_labels_are_the_product_of_the_recorded_coordinates() -> None:
    task = ParityTask(n_bits=10, k=3, coordinates=[7, 2, 5], n_train=64, n_test=32)
    data = make_data(task, seed=1)
    x = data.x_train.numpy()
    product = x[:, 7] * x[:, 2] * x[:, 5]
    assert ((product < 0).astype(int) == data.y_train.numpy()).all()
    assert set(np.unique(x).tolist()) == {-1.0, 1.0}
    assert data.info["coordinates"].tolist() == [7, 2, 5]
    assert data.x_train.shape == (64, 10) and data.x_test.shape == (32, 10)


def test_parity_label_noise_flips_training_labels_only() -> None:
    task = ParityTask(n_bits=8, k=2, n_train=100, n_test=50, label_noise=0.25)
    data = make_data(task, 3)
    flipped = (data.y_train != data.y_train_clean).numpy()
    assert flipped.sum() == 25 and (flipped == data.corrupted.numpy()).all()
    x = data.x_test.numpy()
    assert (((x[:, 0] * x[:, 1]) < 0).astype(int) == data.y_test.numpy()).all()  # test labels clean


def test_s5_is_a_group_under_composition() -> None:
    elements = permutations(5)
    assert len(elements) == 120 and (elements[0] == np.arange(5)).all()  # 0 is the identity
    x = elements[np.random.default_rng(0).integers(0, 120, size=(200, 3))]
    a, b, c = x[:, 0], x[:, 1], x[:, 2]
    assert (compose(compose(a, b), c) == compose(a, compose(b, c))).all()  # associative
    assert (compose(a, inverse(a)) == np.arange(5)).all() and (compose(inverse(a), a) == np.arange(5)).all()
    pairs, labels = permutation_table("xy", 5)
    assert len(pairs) == 120 * 120 and (labels[pairs[:, 1] == 0] == pairs[pairs[:, 1] == 0, 0]).all()  # x e = x
    assert not (labels == permutation_table("xy", 5)[1].reshape(120, 120).T.ravel()).all()  # S5 is not abelian
    _, conjugates = permutation_table("xyx^-1", 5)
    table, conjugate = labels.reshape(120, 120), conjugates.reshape(120, 120)
    inverses = np.array([int(np.flatnonzero(table[i] == 0)[0]) for i in range(120)])  # x x^-1 = e
    assert (table[inverses, np.arange(120)] == 0).all()  # x^-1 x = e too
    assert all(conjugate[x, y] == table[table[x, y], inverses[x]] for x in range(0, 120, 7) for y in range(0, 120, 11))


def test_conjugation_and_xyx_match_their_definitions() -> None:
    elements = permutations(4)
    index = {tuple(p): i for i, p in enumerate(elements.tolist())}
    for operation, formula in (
        ("xyx^-1", lambda x, y: compose(compose(x, y), inverse(x))),
        ("xyx", lambda x, y: compose(compose(x, y), x)),
    ):
        pairs, labels = permutation_table(operation, 4)
        for (i, j), label in zip(pairs[::37].tolist(), labels[::37].tolist()):
            assert label == index[tuple(formula(elements[i], elements[j]).tolist())]


def test_permutation_task_splits_and_holds_out() -> None:
    data = make_data(PermutationTask(degree=4, train_fraction=1.0, holdout_labels=[0]), seed=0)
    assert set(data.y_test.tolist()) == {0} and len(data.y_test) == 24  # x y = e for 24 pairs
    assert data.n_classes == 24 and len(data.y_train) == 24 * 24 - 24


def test_nonzero_b_leaves_out_b_zero_for_any_operation() -> None:
    """ironjr/grokfast's table: x * y mod p for 0 <= x < p, 0 < y < p."""
    task = ModularTask(operation="mul", modulus=7, nonzero_b=True, train_fraction=0.5)
    pairs, labels = modular_table(task)
    assert len(pairs) == 7 * 6 and (pairs[:, 1] != 0).all()
    assert (labels == pairs[:, 0] * pairs[:, 1] % 7).all()
    data = make_data(task, seed=0)
    assert len(data.info["train_index"]) + len(data.info["test_index"]) == 42
    assert len(modular_table(task.model_copy(update={"nonzero_b": False}))[0]) == 49


@pytest.mark.parametrize("task", [
    {"name": "modular", "modulus": 13, "train_fraction": 0.4},
    {"name": "modular", "modulus": 13, "operation": "div"},  # p (p - 1) pairs: the table bounds them
    {"name": "permutation", "degree": 4},
    {"name": "addition", "operands": 9, "n_train": 20},
    {"name": "parity", "n_bits": 12, "k": 3, "n_train": 40, "n_test": 30},
    {"name": "images", "dataset": "digits", "n_train": 50, "n_test": 20},
    {"name": "teacher", "dim": 7, "n_train": 30, "n_test": 12},
], ids=lambda task: task["name"])  # fmt: skip
def test_a_task_s_sizes_are_those_of_the_data_it_makes(task: dict[str, object]) -> None:
    """What the plan and the memory estimate read (TaskSizes) against the data a run gets: exact for the vector
    tasks, an upper bound for the tables (whose eligible pairs the config alone does not count)."""
    config = RunConfig.model_validate({"task": task, "train": {"loss": "mse"}})
    sizes, data = config.task.sizes, make_data(config.task, seed=3)
    n_train, n_test = len(data.x_train), len(data.x_test)
    assert sizes.n_classes == data.n_classes and sizes.vocab == data.vocab
    assert sizes.input_dim == (data.x_train.shape[1] if data.x_train.ndim > 1 else 1)
    if sizes.table:
        assert n_train <= sizes.n_train + 1 and n_train + n_test <= sizes.n_examples == sizes.n_evaluated
    else:
        assert (sizes.n_train, sizes.n_examples, sizes.n_evaluated) == (n_train, n_train + n_test, max(n_train, n_test))
