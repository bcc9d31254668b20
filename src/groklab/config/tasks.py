"""Task specs: modular arithmetic, permutation-group products (S5), integer addition, sparse parity, images, and
regression on a teacher."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from groklab.config.base import STRICT, Spec
from groklab.factories import named

POLYNOMIAL_OPERATIONS = ("x2+y2", "x2+xy+y2", "x2+xy+y2+x", "x3+xy", "x3+xy2+y")
ModularOperation = Literal["add", "sub", "mul", "div", "x2+y2", "x2+xy+y2", "x2+xy+y2+x", "x3+xy", "x3+xy2+y"]


@dataclass(frozen=True)
class TaskSizes:
    """What the plan, the memory estimate and the model's shapes need of a task, from its config alone (no data is
    made, or for data from a file, from the file: groklab.data.task_sizes), so that engine/plan.py never asks which
    task it is."""

    n_train: int
    """Training examples of a run."""
    n_examples: int
    """Examples a run holds: its training and test sets (a table task: the whole table)."""
    n_evaluated: int
    """Examples of the largest set an evaluation reads at once."""
    input_dim: int
    """Features of an example (a pair task: its 2 operand tokens)."""
    vocab: int | None
    """Operand values of a token task; None where inputs are vectors."""
    n_classes: int
    """Classes (1: a regression)."""
    table: bool = False
    """Its examples are built as a table of Python integers (~100 bytes an example while it is made)."""


class _TableTask(Spec):
    """A binary operation over a finite table of pairs: split per seed, optional held-out labels and noise."""

    model_config = STRICT
    train_fraction: float = 0.5
    """Fraction of the (eligible) pairs used for training, drawn per seed; the rest is the test set.
    In (0, 1); 1 is allowed only with holdout_labels (then the test set is exactly the held-out labels)."""
    label_noise: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of training labels replaced by a different, uniformly random label (Doshi et al. 2023).
    Exactly round(label_noise * n_train) examples are corrupted; their indices are recorded."""
    holdout_labels: list[int] = []
    """Every example whose label is in this list goes to the test set (seed 003, exp3)."""
    on_generalized: dict[Literal["train_fraction"], float] = {}
    """A change of the training set once the run has generalized (test accuracy >= 99% at an evaluation):
    {train_fraction: F} trains from then on on a random subset of the run's training examples, round(F x the
    eligible pairs) of them (0 < F < train_fraction), drawn from the run's seed and recorded (`train_kept` in
    its data, `shrunk_step` in the runs table). Varma et al. 2023's ungrokking. Per run, inside a stack (sweep
    task.on_generalized.train_fraction); training and the train metrics then read only the kept examples (full
    batch only); the test set stays as it was."""
    shrink_step: int | None = Field(None, ge=0)
    """Make on_generalized's change at this step instead, whether or not the run has generalized by then (e.g.
    a control that shrinks a run that has only memorized)."""

    @property
    def n_labels(self) -> int:
        """Number of classes (and of operand values)."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _check_split(self) -> _TableTask:
        top = 1.0 if self.holdout_labels else 1.0 - 1e-12
        if not 0.0 < self.train_fraction <= top:
            allowed = "(0, 1]" if self.holdout_labels else "(0, 1) (1 only together with holdout_labels)"
            raise ValueError(f"task.train_fraction: {self.train_fraction} is outside {allowed}")
        bad = [label for label in self.holdout_labels if not 0 <= label < self.n_labels]
        if bad:
            raise ValueError(f"task.holdout_labels: {bad} are not labels 0..{self.n_labels - 1}")
        kept = self.on_generalized.get("train_fraction")
        if kept is not None and not 0.0 < kept < self.train_fraction:
            raise ValueError(
                f"task.on_generalized.train_fraction: {kept}; allowed: between 0 and task.train_fraction "
                f"({self.train_fraction}), exclusive"
            )
        if self.shrink_step is not None and kept is None:
            raise ValueError("task.shrink_step: there is no change to make; set task.on_generalized.train_fraction")
        return self

    @property
    def kept_fraction(self) -> float | None:
        """The training fraction a run shrinks to (task.on_generalized), or None."""
        return self.on_generalized.get("train_fraction")

    @property
    def sizes(self) -> TaskSizes:
        """Operand pairs drawn from a table of n_labels^2 pairs."""
        table, p = self.n_labels**2, self.n_labels
        n_train = round(self.train_fraction * table)
        return TaskSizes(n_train, table, table, input_dim=2, vocab=p, n_classes=p, table=True)


class ModularTask(_TableTask):
    """Binary operation a ∘ b mod p over all pairs (a, b), as in Power et al. 2022 and Gromov 2023.

    Encoded example (operation add, modulus 7): the pair (a=3, b=5) is the input tokens [3, 5] and
    its label is (3 + 5) mod 7 = 1. An MLP with one-hot input sees [e_3 | e_5], a vector of 2p entries;
    a transformer sees the sequence [3, 5, =] (or [3, op, 5, =]) and answers at the "=" position.
    """

    name: Literal["modular"] = "modular"
    """Task family: modular arithmetic."""
    operation: ModularOperation = "add"
    """add: a+b; sub: a-b; mul: a*b; div: a*b^-1 (b != 0, modulus prime); polynomials of Power et al.:
    x2+y2, x2+xy+y2, x2+xy+y2+x, x3+xy, x3+xy2+y (x = a, y = b), all mod p."""
    modulus: int = Field(97, ge=2)
    """p: the modulus; labels and operands are residues 0..p-1. Must be prime for div."""
    nonzero_b: bool = False
    """Leave out every pair with b = 0, as division always does: ironjr/grokfast's multiplication table is
    x * y mod p for 0 <= x < p, 0 < y < p (p (p - 1) pairs)."""

    @property
    def n_labels(self) -> int:
        """p."""
        return self.modulus

    @model_validator(mode="after")
    def _check_modulus(self) -> ModularTask:
        p = self.modulus
        if self.operation == "div" and not _is_prime(p):
            raise ValueError(f"task.modulus: {p} is not prime; division a*b^-1 mod p needs a prime modulus")
        return self


class PermutationTask(_TableTask):
    """Products in the symmetric group S_n (Power et al. 2022 use S5: 120 permutations).

    Permutations are numbered in lexicographic order of their one-line notation (0 is the identity),
    and (x y)(i) = x(y(i)). Encoded example (degree 3, operation xy): x = 1 = (0 2 1), y = 2 = (1 0 2);
    x y = (x[1], x[0], x[2]) = (2, 0, 1), which is permutation 4: tokens [1, 2], label 4.
    """

    name: Literal["permutation"] = "permutation"
    """Task family: permutation-group products."""
    operation: Literal["xy", "xyx^-1", "xyx"] = "xy"
    """xy: x∘y; xyx^-1: x∘y∘x⁻¹ (conjugation); xyx: x∘y∘x."""
    degree: int = Field(5, ge=2, le=6)
    """n of S_n: 5 gives Power et al.'s 120 permutations (6 gives 720)."""

    @property
    def n_labels(self) -> int:
        """n!."""
        return math.factorial(self.degree)


class AdditionTask(Spec):
    """Addition a + b of integers 0..p-1, not modular, over unordered pairs: Liu et al. 2022's toy task.

    The data set is the p(p+1)/2 pairs (a, b) with a <= b, numbered as `for a in range(p): for b in range(a, p)`
    (the order of measures/liu.py); the label is the sum, one of 2p - 1 classes. Encoded example (operands
    10): the pair (3, 5) is the input tokens [3, 5] and its label is 8.
    """

    model_config = STRICT
    name: Literal["addition"] = "addition"
    """Task family: integer addition over unordered pairs."""
    operands: int = Field(10, ge=2)
    """p: the operands are the integers 0..p-1 (Liu et al.: 10); labels are the sums 0..2p-2."""
    n_train: int = Field(45, ge=1)
    """Training pairs, drawn per seed without replacement (Liu et al.: 45 of 55; Figs. 3-4 sweep 5..54);
    the other pairs are the test set, so at most p(p+1)/2 - 1."""
    label_noise: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of training labels replaced by a different, uniformly random sum (as task.label_noise of the
    modular tasks); exactly round(label_noise * n_train)."""

    @property
    def n_examples(self) -> int:
        """p(p+1)/2: the unordered pairs."""
        return self.operands * (self.operands + 1) // 2

    @property
    def n_labels(self) -> int:
        """2p - 1 sums."""
        return 2 * self.operands - 1

    @property
    def sizes(self) -> TaskSizes:
        """Operand pairs from the table of unordered pairs."""
        n = self.n_examples
        return TaskSizes(self.n_train, n, n, input_dim=2, vocab=self.operands, n_classes=self.n_labels, table=True)

    @model_validator(mode="after")
    def _check_split(self) -> AdditionTask:
        if self.n_train >= self.n_examples:
            raise ValueError(
                f"task.n_train: {self.n_train} leaves no test pair; allowed 1..{self.n_examples - 1} "
                f"(p = {self.operands} has {self.n_examples} unordered pairs)"
            )
        return self


class ParityTask(Spec):
    """Sparse (n, k)-parity (Barak et al. 2022): x uniform in {-1,1}^n, y = prod_{i in S} x_i, |S| = k.

    Encoded example (n_bits 4, k 2, coordinates [0, 1]): x = [-1, 1, 1, -1] has parity -1 * 1 = -1,
    which is class 1 (class 0 is parity +1, class 1 is parity -1).
    """

    model_config = STRICT
    name: Literal["parity"] = "parity"
    """Task family: sparse parity."""
    n_bits: int = Field(50, ge=1)
    """n: length of the input vector."""
    k: int = Field(2, ge=1)
    """k: number of coordinates whose product is the label."""
    coordinates: list[int] | None = None
    """The k relevant coordinates (0-based); null means the first k, as in seed 001 (x1 * x2)."""
    n_train: int = Field(300, ge=1)
    """Training examples, sampled per seed."""
    n_test: int = Field(100, ge=1)
    """Test examples, sampled per seed (labels always clean)."""
    label_noise: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of training labels flipped (seed 001, Hypothesis 2); exactly round(label_noise * n_train)."""

    @model_validator(mode="after")
    def _check(self) -> ParityTask:
        if self.k > self.n_bits:
            raise ValueError(f"task.k: {self.k} is larger than task.n_bits ({self.n_bits}); allowed 1..n_bits")
        if self.coordinates is not None:
            coords = self.coordinates
            if len(coords) != self.k or len(set(coords)) != self.k or not all(0 <= c < self.n_bits for c in coords):
                raise ValueError(
                    f"task.coordinates: {coords} must be {self.k} distinct indices in 0..{self.n_bits - 1}"
                )
        return self

    @property
    def relevant(self) -> list[int]:
        """The coordinates whose product is the label."""
        return list(self.coordinates) if self.coordinates is not None else list(range(self.k))

    @property
    def sizes(self) -> TaskSizes:
        """Vectors of n_bits, two classes."""
        most = max(self.n_train, self.n_test)
        return TaskSizes(self.n_train, self.n_train + self.n_test, most, self.n_bits, vocab=None, n_classes=2)


IMAGE_SETS = {"digits": (64, 1797, 0), "mnist": (784, 60000, 10000)}
"""dataset -> (pixels per image, training images, test images; 0: the digits have no test file of their own)."""


class ImageTask(Spec):
    """Labelled images read as flat pixel vectors in [0, 1], ten classes (Omnigrok, Liu, Michaud, Tegmark 2023).

    Encoded example (dataset digits): an 8 x 8 image with pixel values 0..16 is the vector of its 64 pixels / 16,
    row by row, and its label is the digit it shows, 0..9. With train.loss mse the target is the label's one-hot
    vector (Omnigrok's MSE on one-hot targets); with cross_entropy the label.
    """

    model_config = STRICT
    name: Literal["images"] = "images"
    """Task family: image classification."""
    dataset: Literal["digits", "mnist"] = "digits"
    """digits: the 1,797 8 x 8 handwritten digits scikit-learn ships inside its package (load_digits; needs
    `pip install 'groklab[images]'`), so everything runs offline; mnist: the 28 x 28 MNIST digits, read from the
    standard IDX files in task.path (nothing is downloaded)."""
    path: str | None = None
    """Dataset mnist: the directory holding MNIST's four IDX files, train-images-idx3-ubyte,
    train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each may end in .gz)."""
    n_train: int = Field(1000, ge=1)
    """Training images, drawn per seed without replacement (digits: from all 1,797; mnist: from the training
    file's 60,000; Omnigrok: 1,000)."""
    n_test: int | None = Field(None, ge=1)
    """Test images: null for all the others (digits: every image not drawn for training; mnist: the whole t10k
    file), or a number drawn per seed from those."""
    label_noise: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of training labels replaced by a different, uniformly random digit; exactly
    round(label_noise * n_train)."""

    @property
    def n_labels(self) -> int:
        """Ten digits."""
        return 10

    @property
    def n_inputs(self) -> int:
        """Pixels per image: 64 (digits) or 784 (mnist)."""
        return IMAGE_SETS[self.dataset][0]

    @property
    def test_size(self) -> int:
        """Test images of a run, as far as the config tells (the files may hold fewer: data.check_data reads them)."""
        _, n_train_file, n_test_file = IMAGE_SETS[self.dataset]
        available = n_test_file or n_train_file - self.n_train
        return min(self.n_test, available) if self.n_test is not None else available

    @property
    def sizes(self) -> TaskSizes:
        """Vectors of pixels, ten classes."""
        n, test = self.n_train, self.test_size
        return TaskSizes(n, n + test, max(n, test), self.n_inputs, vocab=None, n_classes=self.n_labels)

    @model_validator(mode="after")
    def _check(self) -> ImageTask:
        if self.dataset == "mnist" and self.path is None:
            raise ValueError("task.path: dataset mnist needs the directory of its IDX files; nothing is downloaded")
        if self.dataset == "digits" and self.path is not None:
            raise ValueError("task.path: dataset digits is scikit-learn's; allowed: null (path is for mnist)")
        return self


class TeacherTask(Spec):
    """Regression on a quadratic teacher (Kumar, Bordelon, Gershman, Pehlevan 2024): x ~ N(0, I_D) and
    y = (beta . x)^2 / 2, beta a unit vector drawn per seed. A regression task: the network has one output, the
    loss is its squared error (train.loss mse), and the runs table's accuracies are R^2 = 1 - MSE / Var(y) on
    each set, so "memorized" and "generalized" mean R^2 >= 0.99 on the training and the test set.

    Encoded example (dim 2, beta = (0.6, 0.8)): x = (1, 2) has beta . x = 2.2 and label y = 2.42.
    """

    model_config = STRICT
    name: Literal["teacher"] = "teacher"
    """Task family: regression on a teacher."""
    dim: int = Field(100, ge=1)
    """D: the input's dimension (Kumar et al.: 100)."""
    n_train: int = Field(550, ge=2)
    """P: training points, sampled per seed (Kumar et al.: 550)."""
    n_test: int = Field(1000, ge=2)
    """Test points, sampled per seed."""

    @property
    def n_labels(self) -> int:
        """One output: the regression target."""
        return 1

    @property
    def sizes(self) -> TaskSizes:
        """Vectors of dim, one output."""
        most = max(self.n_train, self.n_test)
        return TaskSizes(self.n_train, self.n_train + self.n_test, most, self.dim, vocab=None, n_classes=1)


class _YourData(Spec):
    """What your own data says of itself, from a file (ArrayTask) or a function (FunctionTask)."""

    model_config = STRICT
    kind: Literal["classification", "regression"] = "classification"
    """classification: y holds integer labels (cross-entropy or mse over classes); regression: real targets (mse
    on one output)."""
    train_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    """For data given as x and y: the fraction of the examples each seed trains on (the rest is its test set)."""
    n_classes: int | None = Field(None, ge=2)
    """Classes of a classification (default: the largest label + 1)."""
    label_noise: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of training labels replaced by another class (a classification): exactly round(label_noise *
    n_train), drawn per seed."""


IN_MEMORY: dict[str, dict[str, np.ndarray]] = {}
"""Arrays handed to ArrayTask in Python, by their digest (the task's path is memory:DIGEST): this process's own."""

ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test", "x", "y")


class ArrayTask(_YourData):
    """Your own data, from a file: classification (integer labels) or regression (real targets) of vectors.

    The file (.npz, .pt, .parquet or .csv) holds x_train, y_train, x_test, y_test; or x and y, which each seed
    splits by train_fraction, as the built-in tasks draw their splits. In a table (.parquet, .csv) y is the column
    `y`, a column `split` (train / test) splits it where there is one, and every other column is a feature. The
    file is read and checked before anything is written (data/arrays.py): numbers only, no NaN or infinity, as
    many targets as inputs, integer labels 0..n_classes-1 for a classification. In Python the arrays themselves
    may be given instead of a path: `ArrayTask(x=..., y=..., train_fraction=0.5)` (numpy arrays or tensors).
    """

    name: Literal["arrays"] = "arrays"
    """Task family: arrays from a file."""
    path: str
    """The file (.npz, .pt, .parquet, .csv); relative paths from the working directory. Arrays given in Python are
    kept in memory as memory:SHA256 (this process only)."""

    @model_validator(mode="before")
    @classmethod
    def _arrays_given(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(name in data for name in ARRAY_NAMES):
            return data
        arrays = {name: np.asarray(data[name]) for name in ARRAY_NAMES if name in data}
        digest = hashlib.sha256()
        for name, array in sorted(arrays.items()):
            digest.update(f"{name}{array.dtype.str}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        path = f"memory:{digest.hexdigest()}"
        IN_MEMORY[path] = arrays
        return {**{k: v for k, v in data.items() if k not in ARRAY_NAMES}, "path": path}


class FunctionTask(_YourData):  # type: ignore[no-redef]  # (pydantic.mypy: a field named kwargs)
    """Your own data, from a function: `factory(seed, **kwargs)` returns the run's arrays as a dict (numpy arrays
    or tensors), x_train, y_train, x_test, y_test, or x and y (split per seed by train_fraction), as a file would
    hold them, and is checked as a file is. Every seed's arrays must have the same shapes (the runs stack). Any
    other array it returns (a teacher's weights, say) is kept with the run's data. The built-in teacher task makes
    its data this way (data/teacher.py).
    """

    name: Literal["function"] = "function"
    """Task family: arrays from a function."""
    factory: str
    """'package.module:function' (in Python, the function itself) called as factory(seed, **kwargs); looked up
    in the installed packages, the current directory and the spec's folder; naming it runs its code."""
    kwargs: dict[str, Any] = {}
    """Keyword arguments of the factory (sweepable as task.kwargs.NAME)."""

    @field_validator("factory", mode="before")
    @classmethod
    def _named(cls, factory: str | Callable[..., Any]) -> str:
        return named(factory, "task.factory")


YourData = ArrayTask | FunctionTask
"""Tasks whose data you bring (data/arrays.py reads them alike)."""


VectorTask = ParityTask | ImageTask | TeacherTask | ArrayTask | FunctionTask
"""Tasks whose inputs are vectors of numbers, not tokens: the MLP reads them as they are."""


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))
