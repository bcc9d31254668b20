"""Your own data: from a file (task.name arrays; read once per file version), arrays given in Python, or a function
(task.name function; called once per seed), checked, split per seed.

    .npz   arrays x_train, y_train, x_test, y_test, or x and y (np.load, never pickled objects)
    .pt    a dict of those tensors (torch.load with weights_only: tensors, never code)
    .parquet / .csv   a table: column y the target, column split (train / test) if the file splits it, every
                      other column a feature

A file of x and y is split by task.train_fraction, per seed, as the built-in tasks draw their splits
(seeds.rng_for(seed, "split")). Everything that can be wrong with the file is said in one line naming it before
anything is written: a missing or unreadable file, missing arrays, inputs that are not numbers or not finite,
targets that do not match the inputs in number, labels that are not integers 0..n_classes-1.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from groklab.config import FunctionTask, SpecError
from groklab.config.tasks import IN_MEMORY, TaskSizes, YourData
from groklab.data.dataset import RunData, corrupt_labels
from groklab.factories import resolve
from groklab.plugins import described
from groklab.seeds import rng_for

SPLIT = ("x_train", "y_train", "x_test", "y_test")
WHOLE = ("x", "y")
SUFFIXES = (".npz", ".pt", ".parquet", ".csv")


def read_arrays(task: YourData, seed: int = 0) -> dict[str, np.ndarray]:
    """The task's arrays (a file's, arrays given in Python, or a function's for `seed`), checked: x_train, y_train,
    x_test, y_test (float64 inputs (n, d); labels int64 or float64 targets (n,)), or x and y. SpecError naming the
    source and what is wrong."""
    where = _where(task, seed)
    if isinstance(task, FunctionTask):
        raw = _named(where, _called(task.factory, json.dumps(task.kwargs, sort_keys=True), seed))
    elif task.path.startswith("memory:"):
        if task.path not in IN_MEMORY:
            raise SpecError(f"task.path: {task.path} names arrays given in Python to another process, not this one; "
                            "allowed: a file")  # fmt: skip
        raw = _named(where, IN_MEMORY[task.path])
    else:
        path = Path(task.path)
        if path.suffix not in SUFFIXES:
            raise SpecError(f"task.path: {path} is not a .npz, .pt, .parquet or .csv file")
        try:
            stat = path.stat()
        except OSError as error:
            raise SpecError(f"task.path: {path} cannot be read ({error.strerror or error})") from None
        raw = _read(str(path), stat.st_mtime_ns, stat.st_size)
    arrays = {name: _checked(task, f"{where}: {name}", array) for name, array in raw.items()}
    for x, y in (("x", "y"), ("x_train", "y_train"), ("x_test", "y_test")):
        if x in arrays and len(arrays[x]) != len(arrays[y]):
            raise SpecError(f"{where}: {len(arrays[x])} inputs in {x} but {len(arrays[y])} targets in {y}")
    return arrays


def data_sizes(task: YourData) -> TaskSizes:
    """What the plan needs of the task, from its arrays (a function's: seed 0's; every seed's have its shapes)."""
    arrays = read_arrays(task)
    if "x" in arrays:
        n = len(arrays["x"])
        n_train = round(task.train_fraction * n) if task.train_fraction is not None else n
        n_test = n - n_train
    else:
        n_train, n_test = len(arrays["x_train"]), len(arrays["x_test"])
    x = arrays.get("x", arrays.get("x_train"))
    assert x is not None
    most = max(n_train, n_test)
    return TaskSizes(n_train, n_train + n_test, most, int(x.shape[1]), vocab=None, n_classes=_n_classes(task, arrays))


def check_arrays(task: YourData) -> None:
    """SpecError for data that cannot train this task (before anything is written)."""
    arrays, where = read_arrays(task), _where(task)
    source = where.split(": ", 1)[1]
    if "x" in arrays and task.train_fraction is None:
        raise SpecError(f"task.train_fraction: {source} holds x and y; give the fraction each seed trains on")
    if "x_train" in arrays and task.train_fraction is not None:
        raise SpecError(f"task.train_fraction: {source} is split already (x_train, x_test); allowed: null")
    sizes = data_sizes(task)
    if sizes.n_train < 1 or sizes.n_examples - sizes.n_train < 1:
        raise SpecError(f"{where} gives {sizes.n_train} training and "
                        f"{sizes.n_examples - sizes.n_train} test examples; allowed: at least one each")  # fmt: skip
    x_train, x_test = arrays.get("x_train"), arrays.get("x_test")
    if x_train is not None and x_test is not None and x_train.shape[1:] != x_test.shape[1:]:
        raise SpecError(f"{where}: x_train has {x_train.shape[1]} features, x_test {x_test.shape[1]}")


def make_arrays(task: YourData, seed: int) -> RunData:
    """One run's data: the given split, or the seed's split of x and y; label noise drawn per seed."""
    arrays = read_arrays(task, seed)
    if "x" in arrays:
        assert task.train_fraction is not None  # check_arrays
        order = rng_for(seed, "split").permutation(len(arrays["x"]))
        n_train = round(task.train_fraction * len(order))
        train, test = np.sort(order[:n_train]), np.sort(order[n_train:])
        x_train, y_train, x_test, y_test = arrays["x"][train], arrays["y"][train], arrays["x"][test], arrays["y"][test]
        info = {"train_index": train, "test_index": test}
    else:
        x_train, y_train, x_test, y_test = (arrays[name] for name in SPLIT)
        info = {}
    if isinstance(task, FunctionTask):  # what else the function returns is kept with the run's data (data.npz)
        made = _called(task.factory, json.dumps(task.kwargs, sort_keys=True), seed)
        info |= {name: array for name, array in made.items() if name not in (*SPLIT, *WHOLE)}
    n_classes = _n_classes(task, arrays)
    clean = y_train
    corrupted = np.zeros(len(y_train), dtype=bool)
    if task.kind == "classification" and task.label_noise > 0:
        y_train, corrupted = corrupt_labels(clean, task.label_noise, n_classes, rng_for(seed, "noise"))
    target = torch.int64 if task.kind == "classification" else torch.float32
    return RunData(  # copies: the file's arrays stay as read, for the next run of the same file
        x_train=torch.tensor(x_train, dtype=torch.float32),
        y_train=torch.tensor(y_train, dtype=target),
        x_test=torch.tensor(x_test, dtype=torch.float32),
        y_test=torch.tensor(y_test, dtype=target),
        y_train_clean=torch.tensor(clean, dtype=target),
        corrupted=torch.tensor(corrupted),
        n_classes=n_classes,
        vocab=None,
        info=info,
    )


def file_digest(path: str) -> str:
    """SHA-256 of the data file (arrays given in Python: of the arrays): what a result was trained on."""
    if path.startswith("memory:"):
        return path.removeprefix("memory:")
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _where(task: YourData, seed: int = 0) -> str:
    """The key and source an error about the task's data names."""
    if isinstance(task, FunctionTask):
        return f"task.factory: {task.factory}(seed={seed})"
    return "task: the arrays given" if task.path.startswith("memory:") else f"task.path: {task.path}"


@functools.lru_cache(maxsize=8)
def _called(factory: str, kwargs: str, seed: int) -> dict[str, np.ndarray]:
    """A function task's arrays for one seed (once per factory, kwargs and seed)."""
    where = f"task.factory: {factory}(seed={seed})"
    try:
        made = resolve(factory, "task.factory")(seed, **json.loads(kwargs))
    except SpecError:
        raise
    except Exception as error:  # the user's code: whatever it raises, said in one line
        raise SpecError(f"{where} raised {described(error)}") from None
    if not isinstance(made, dict):
        raise SpecError(f"{where} returned a {type(made).__name__}; allowed: a dict of arrays")
    return {str(k): v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in made.items()}


def _named(where: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of a split (x_train, y_train, x_test, y_test) or of x and y; SpecError if neither is complete."""
    names = set(arrays)
    if not (set(SPLIT) <= names or set(WHOLE) <= names):
        found = ", ".join(sorted(names)) or "nothing"
        raise SpecError(f"{where} holds {found}; allowed: x_train, y_train, x_test, y_test, or x and y")
    return {name: arrays[name] for name in (SPLIT if set(SPLIT) <= names else WHOLE)}


def _n_classes(task: YourData, arrays: dict[str, np.ndarray]) -> int:
    if task.kind == "regression":
        return 1
    largest = max(int(arrays[name].max(initial=0)) for name in arrays if name.startswith("y"))
    if task.n_classes is not None and largest >= task.n_classes:
        source = _where(task).split(": ", 1)[1]
        raise SpecError(f"task.n_classes: {task.n_classes}, but {source} has label {largest}; allowed: labels "
                        f"0..n_classes-1")  # fmt: skip
    return task.n_classes or max(largest + 1, 2)


@functools.lru_cache(maxsize=4)
def _read(path: str, _mtime: int, _size: int) -> dict[str, np.ndarray]:
    """The arrays of a file by name, as stored (once per file version: its path, mtime and size)."""
    suffix = Path(path).suffix
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
        elif suffix == ".pt":
            stored = torch.load(path, weights_only=True)
            if not isinstance(stored, dict):
                raise SpecError(f"task.path: {path} holds a {type(stored).__name__}; allowed: a dict of tensors")
            arrays = {str(k): v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in stored.items()}
        else:
            import pandas as pd

            table = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
            arrays = _from_table(path, table)
    except SpecError:
        raise
    except Exception as error:  # numpy's, torch's, pandas' and pyarrow's errors for a damaged file differ
        raise SpecError(f"task.path: {path} cannot be read ({type(error).__name__})") from None
    return _named(f"task.path: {path}", arrays)


def _from_table(path: str, table: object) -> dict[str, np.ndarray]:
    import pandas as pd

    assert isinstance(table, pd.DataFrame)
    if "y" not in table.columns:
        raise SpecError(f"task.path: {path} has no column y; allowed: a column y, features, and optionally split")
    features = [c for c in table.columns if c not in ("y", "split")]
    if "split" not in table.columns:
        return {"x": table[features].to_numpy(), "y": table["y"].to_numpy()}
    split = table["split"].astype(str)
    if not set(split) <= {"train", "test"}:
        raise SpecError(f"task.path: {path}: column split holds {sorted(set(split) - {'train', 'test'})[:3]}; "
                        "allowed: train, test")  # fmt: skip
    train, test = table[split == "train"], table[split == "test"]
    return {"x_train": train[features].to_numpy(), "y_train": train["y"].to_numpy(),
            "x_test": test[features].to_numpy(), "y_test": test["y"].to_numpy()}  # fmt: skip


def _checked(task: YourData, where: str, array: np.ndarray) -> np.ndarray:
    """An input (n, d) of finite numbers, or a target (n,): integer labels >= 0, or finite reals. `where`: the
    source and the array's name."""
    name = where.rsplit(": ", 1)[1]
    if array.dtype.kind not in "biuf":
        raise SpecError(f"{where} holds {array.dtype} values; allowed: numbers")
    if name.startswith("x"):
        if array.ndim != 2 or array.shape[1] < 1:
            raise SpecError(f"{where} has shape {array.shape}; allowed: (examples, features)")
        if not np.isfinite(array).all():
            raise SpecError(f"{where} holds NaN or infinite values")
        return array.astype(np.float64, copy=False)
    if array.ndim != 1:
        raise SpecError(f"{where} has shape {array.shape}; allowed: (examples,)")
    if task.kind == "regression":
        if not np.isfinite(array).all():
            raise SpecError(f"{where} holds NaN or infinite values")
        return array.astype(np.float64, copy=False)
    if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
        raise SpecError(f"{where} holds non-integer labels; allowed: classes 0, 1, ... (or task.kind regression)")
    if array.size and array.min() < 0:
        raise SpecError(f"{where} holds label {int(array.min())}; allowed: classes 0, 1, ...")
    return array.astype(np.int64)
