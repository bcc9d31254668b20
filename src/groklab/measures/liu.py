"""Liu et al. 2022's effective theory of representation learning, formula by formula.

Conventions (as the paper and its code, ejmichaud/grokking-squared toy/train_add.py, define them):
- The task is addition of integers 0..p-1 (not modular). An *example* is an unordered pair (i, j), i <= j,
  numbered in the order `for i in range(p): for j in range(i, p)`: N = p(p+1)/2 examples, 2p - 1 sums.
- A representation E is a (p, d) array: E_i embeds the integer i; the decoder reads E_i + E_j.
- A *parallelogram* is two distinct examples with the same sum, (i, j) and (m, n) with i + j = m + n. It
  holds in E when E_i + E_j = E_m + E_n; as a linear equation on E it is the row e_i + e_j - e_m - e_n
  (e_k the k-th unit vector): P0 is the set of all of them, A their rows.
- Given a training set D (example indices), P0(D) is the parallelograms with both examples in D, and P(D)
  every parallelogram of P0 that P0(D) implies, i.e. whose row is a linear combination of P0(D)'s rows
  (E0 + E3 = E1 + E2 and E2 + E5 = E3 + E4 imply E0 + E5 = E1 + E4). A test example is predictable when
  some parallelogram of P(D) joins it to a training example: the decoder maps both to one point.
- "Holds" in a learned E is measured on the standardized representation (zero mean, unit standard
  deviation per dimension, the unbiased std as torch.std): mean over dimensions of the squared distance
  E_i + E_j - E_m - E_n below a threshold (the code's threshold_P = 0.01).
"""

from __future__ import annotations

import functools

import numpy as np

from groklab.data import addition_table

THRESHOLD = 0.01
"""Mean squared distance under which a parallelogram holds in a standardized representation (threshold_P)."""


def examples(p: int) -> np.ndarray:
    """(N, 2) the unordered pairs (i, j), i <= j, in the paper's order.

    >>> examples(3).tolist()
    [[0, 0], [0, 1], [0, 2], [1, 1], [1, 2], [2, 2]]
    """
    return addition_table(p)[0]


@functools.cache  # measured at every evaluation of every run: the table is made once per p (read-only)
def parallelograms(p: int) -> tuple[np.ndarray, np.ndarray]:
    """P0: (K, 2) pairs of example indices (u < v) with equal sums, and A: (K, p) their rows e_i + e_j - e_m - e_n.

    For p = 3 the sums are 0, 1, 2, 2, 3, 4: one parallelogram, (0, 2) and (1, 1), the row E0 + E2 - 2 E1.

    >>> P0, A = parallelograms(3)
    >>> P0.tolist(), A.tolist()
    ([[2, 3]], [[1, -2, 1]])
    >>> len(parallelograms(10)[0])  # p = 10: sum over sums s of C(#pairs with sum s, 2) = 40 + 30
    70
    """
    pairs = examples(p)
    sums = pairs.sum(axis=1)
    P0 = np.array([(u, v) for u in range(len(pairs)) for v in range(u + 1, len(pairs)) if sums[u] == sums[v]])
    P0 = P0.reshape(-1, 2)
    A = np.zeros((len(P0), p), dtype=int)
    for row, (u, v) in zip(A, P0):
        np.add.at(row, pairs[u], 1)
        np.add.at(row, pairs[v], -1)
    P0.setflags(write=False)
    A.setflags(write=False)
    return P0, A


def implied(p: int, train: np.ndarray) -> tuple[np.ndarray, int]:
    """P(D) as a boolean mask over P0, and the null-space dimension of P0(D)'s equations.

    A parallelogram is implied when adding its row does not raise the rank of P0(D)'s rows. The null space
    always holds the linear representations a + b k (translation and scale): null_dim - 2 is the freedom a
    representation has beyond them (0: the linear one is the only one).

    >>> mask, null_dim = implied(4, np.array([1, 2, 4, 6]))  # (0,1), (0,2), (1,1), (1,3) of p = 4
    >>> int(mask.sum()), null_dim  # E0+E2 = 2E1 is in D; nothing else follows
    (1, 3)
    >>> mask, null_dim = implied(4, np.arange(10))  # every example: every parallelogram, E linear
    >>> bool(mask.all()), null_dim
    (True, 2)
    """
    P0, A = parallelograms(p)
    in_train = np.asarray(np.isin(P0, train).all(axis=1))
    rank = np.linalg.matrix_rank(A[in_train]) if in_train.any() else 0
    mask = in_train.copy()
    for k in np.flatnonzero(~in_train):
        mask[k] = np.linalg.matrix_rank(np.vstack([A[in_train], A[k]])) == rank
    return mask, int(p - rank)


def reachable(p: int, train: np.ndarray, holding: np.ndarray) -> np.ndarray:
    """Dbar: the training examples and every test example that a holding parallelogram joins to one.

    >>> reachable(3, np.array([3]), np.array([True])).tolist()  # (1,1) in D, E0+E2 = 2E1: (0,2) follows
    [2, 3]
    """
    P0, _ = parallelograms(p)
    train_set = set(train.tolist())
    found = set(train_set)
    for u, v in P0[holding]:
        if u in train_set and v not in train_set:
            found.add(int(v))
        if v in train_set and u not in train_set:
            found.add(int(u))
    return np.array(sorted(found))


def ideal_accuracy(p: int, train: np.ndarray) -> float:
    """Acc-bar: the test accuracy a perfect representation learned from D alone can reach, |Dbar(D)| - |D|
    over the test examples (Liu et al. Sec. 3; the upper bound of Fig. 3).

    With p = 4, D = (0,2), (0,3), (1,2), (1,3), (2,2): E0+E3 = E1+E2 and E1+E3 = 2E2 are in D, and their
    difference E0+E2 = 2E1 joins the test example (1,1) to (0,2); no other test example is joined.

    >>> ideal_accuracy(4, np.array([2, 3, 5, 6, 7]))  # 1 of the 5 test examples
    0.2
    """
    mask, _ = implied(p, train)
    n = p * (p + 1) // 2
    return (len(reachable(p, train, mask)) - len(train)) / (n - len(train))


def standardized(E: np.ndarray) -> np.ndarray:
    """(E - mean) / std per dimension, the unbiased std (torch.std's default, as the code computes it).

    >>> standardized(np.array([[0.0], [1.0], [2.0]])).ravel().tolist()
    [-1.0, 0.0, 1.0]
    """
    return (E - E.mean(axis=0)) / E.std(axis=0, ddof=1)


def holding(p: int, E: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Which parallelograms of P0 hold in a representation E (p, d): mean squared distance < threshold.

    >>> bool(holding(10, np.arange(10.0)[:, None]).all())  # the linear representation: every one holds
    True
    """
    P0, _ = parallelograms(p)
    S, pairs = standardized(E), examples(p)
    left, right = pairs[P0[:, 0]], pairs[P0[:, 1]]
    distance = S[left[:, 0]] + S[left[:, 1]] - S[right[:, 0]] - S[right[:, 1]]
    return (distance**2).mean(axis=1) < threshold


def predicted_accuracy(p: int, train: np.ndarray, E: np.ndarray, threshold: float = THRESHOLD) -> float:
    """The test accuracy the theory predicts from a learned E: |Dbar(D, P(E))| - |D| over the test examples,
    with P(E) the parallelograms holding in E (no induction: what the representation has, Fig. 3's "pred").

    >>> train = np.array([1, 2, 4, 6, 9])  # (0,1), (0,2), (1,1), (1,3), (3,3)
    >>> predicted_accuracy(4, train, np.arange(4.0)[:, None])  # linear: only (2,2) is joined, to (1,3)
    0.2
    >>> predicted_accuracy(4, train, np.array([[0.0], [5.0], [1.0], [3.0]]))  # no parallelogram holds
    0.0
    """
    n = p * (p + 1) // 2
    return (len(reachable(p, train, holding(p, E, threshold))) - len(train)) / (n - len(train))


def rqi(E: np.ndarray, threshold: float = THRESHOLD) -> float:
    """Representation quality index as the code computes it: of the parallelograms i + n = j + m with
    i < j <= m < n among all p integers, the fraction that hold in E (standardized).

    >>> rqi(np.arange(10.0)[:, None]), rqi(np.array([[0.0], [3.0], [1.0], [2.0]]))
    (1.0, 0.0)
    """
    quads = _quadruples(len(E))
    if len(quads) == 0:
        return float("nan")
    S = standardized(E)
    distance = S[quads[:, 0]] + S[quads[:, 1]] - S[quads[:, 2]] - S[quads[:, 3]]
    return float(((distance**2).mean(axis=1) < threshold).mean())


@functools.cache
def _quadruples(p: int) -> np.ndarray:
    """(K, 4) the code's parallelograms (i, n, j, m): i + n = j + m, i < j <= m < n."""
    quads = np.array([(i, n, j, m) for i in range(p) for j in range(i + 1, p) for m in range(j, p)
                      for n in range(m + 1, p) if i + n == j + m], dtype=int).reshape(-1, 4)  # fmt: skip
    quads.setflags(write=False)
    return quads


def effective_loss(E: np.ndarray, A: np.ndarray) -> float:
    """l_eff = l_0 / Z_0 (Liu et al. Sec. 4): l_0 = sum over the rows a of A of |a . E|^2, the squared
    violation of the parallelograms A; Z_0 = sum_k |E_k|^2, so that shrinking E cannot lower it.

    >>> effective_loss(np.array([0.0, 1.0, 0.0]), np.array([[1, -2, 1]]))  # |E0 + E2 - 2 E1|^2 / 1
    4.0
    >>> effective_loss(np.arange(4.0), parallelograms(4)[1])  # a linear E violates none
    0.0
    """
    E = E.reshape(len(E), -1)
    return float(((A @ E) ** 2).sum() / (E**2).sum())


def effective_descent(E0: np.ndarray, A: np.ndarray, eta: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The effective theory's dynamics as the code integrates them: gradient descent on l_eff from E0 (p,),
    with Z_0 held at its initial value, E <- E - eta (2/Z_0 A^T A E - 2 l_0/Z_0^2 E). Returns the trajectory
    (steps, p) and l_0 / Z_0 along it (the code's losses_eff are the l_0).

    By hand, E = (0, 1, 0), one row (1, -2, 1), eta 0.1: the violation -2 gives l_0 = 4 and the step
    -0.1 ((-4, 8, -4) - 8 (0, 1, 0)), so E = (0.4, 1, 0.4), violation -1.2, l_0 = 1.44; then
    E = (0.7552, 0.808, 0.7552), violation -0.1056, l_0 = 0.0112.

    >>> trajectory, losses = effective_descent(np.array([0.0, 1.0, 0.0]), np.array([[1, -2, 1]]), 0.1, 3)
    >>> [round(float(x), 4) for x in losses], trajectory[2].round(4).tolist()
    ([4.0, 1.44, 0.0112], [0.7552, 0.808, 0.7552])
    """
    E = E0.astype(float).copy()
    Z0 = float((E**2).sum())
    trajectory, losses = [], []
    for _ in range(steps):
        trajectory.append(E.copy())
        violation = A @ E
        l0 = float((violation**2).sum())
        losses.append(l0 / Z0)
        E = E - eta * (2 / Z0 * (A.T @ violation) - 2 * l0 / Z0**2 * E)
    return np.array(trajectory), np.array(losses)
