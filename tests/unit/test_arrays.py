"""Your own data (task.name arrays): every file format gives the same data, x and y split per seed as the built-in
tasks split theirs, and every way a file can be wrong is one line naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import groklab
from groklab import ArrayTask, FunctionTask, ModularTask, RunConfig, make_data
from groklab.config import SpecError
from groklab.data import check_data, task_sizes
from groklab.data.modular import modular_table
from groklab.engine.loop import train_stack

P = 7


def _modular_table() -> tuple[np.ndarray, np.ndarray]:
    """(a + b) mod 7 as one-hot rows [e_a, e_b] and labels: the table of the built-in modular task."""
    pairs, labels = modular_table(ModularTask(modulus=P))
    return np.concatenate([np.eye(P)[pairs[:, 0]], np.eye(P)[pairs[:, 1]]], axis=1), labels


def _write(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    if path.suffix == ".npz":
        np.savez(path, **arrays)  # type: ignore[arg-type]
    elif path.suffix == ".pt":
        torch.save({name: torch.from_numpy(array) for name, array in arrays.items()}, path)
    else:
        frames = []
        for split in ("train", "test") if "x_train" in arrays else ("",):
            suffix = f"_{split}" if split else ""
            frame = pd.DataFrame(arrays[f"x{suffix}"], columns=[f"f{i}" for i in range(arrays[f"x{suffix}"].shape[1])])
            frame["y"] = arrays[f"y{suffix}"]
            if split:
                frame["split"] = split
            frames.append(frame)
        table = pd.concat(frames, ignore_index=True)
        table.to_parquet(path) if path.suffix == ".parquet" else table.to_csv(path, index=False)
    return path


def _task(path: Path, **fields: Any) -> ArrayTask:
    return ArrayTask(path=str(path), **fields)


def test_x_and_y_are_split_per_seed_exactly_as_the_built_in_table_tasks_split(tmp_path: Path) -> None:
    x, y = _modular_table()
    path = _write(tmp_path / "table.npz", {"x": x, "y": y})
    for seed in (0, 1, 5):
        ours = make_data(_task(path, train_fraction=0.4), seed)
        builtin = make_data(ModularTask(modulus=P, train_fraction=0.4), seed)
        assert np.array_equal(ours.info["train_index"], builtin.info["train_index"])
        assert torch.equal(ours.y_train, builtin.y_train) and torch.equal(ours.y_test, builtin.y_test)
        assert torch.equal(ours.x_train, torch.from_numpy(x[ours.info["train_index"]]).float())
    assert not np.array_equal(make_data(_task(path, train_fraction=0.4), 0).info["train_index"],
                              make_data(_task(path, train_fraction=0.4), 1).info["train_index"])  # fmt: skip


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".parquet", ".csv"])
def test_every_format_gives_the_same_data(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    split = {"x_train": rng.normal(size=(20, 3)), "y_train": rng.integers(0, 4, 20),
             "x_test": rng.normal(size=(9, 3)), "y_test": rng.integers(0, 4, 9)}  # fmt: skip
    reference = make_data(_task(_write(tmp_path / "ref.npz", split)), seed=0)
    data = make_data(_task(_write(tmp_path / f"data{suffix}", split)), seed=0)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(data, name), getattr(reference, name)), name
    assert data.n_classes == 4 and data.vocab is None and data.y_train.dtype == torch.int64
    sizes = task_sizes(_task(tmp_path / f"data{suffix}"))
    assert (sizes.n_train, sizes.n_examples, sizes.input_dim, sizes.n_classes) == (20, 29, 3, 4)


def test_regression_targets_and_label_noise(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = _write(tmp_path / "data.npz", {"x": rng.normal(size=(50, 2)), "y": rng.normal(size=50)})
    config = RunConfig.model_validate({"task": {"name": "arrays", "path": str(path), "kind": "regression",
                                                "train_fraction": 0.6}, "train": {"loss": "mse"}})  # fmt: skip
    data = make_data(config.task, seed=0)
    assert config.loss_kind == "regression" and data.n_classes == 1 and data.y_train.dtype == torch.float32
    labels = _write(tmp_path / "labels.npz", {"x": rng.normal(size=(40, 2)), "y": rng.integers(0, 3, 40)})
    noisy = make_data(_task(labels, train_fraction=0.5, label_noise=0.25), seed=2)
    assert int(noisy.corrupted.sum()) == 5 and bool((noisy.y_train != noisy.y_train_clean).eq(noisy.corrupted).all())


BAD = {  # what the file holds (None: no file), the task's other fields, and what the one line says
    "no file": (None, {}, "cannot be read"),
    "a text file": ("text", {}, "is not a .npz, .pt, .parquet or .csv file"),
    "garbage": (b"PK\x03\x04 not a zip", {}, "cannot be read"),
    "no arrays it needs": ({"inputs": np.zeros((3, 2))}, {}, "holds inputs; allowed: x_train, y_train"),
    "strings": ({"x": np.array([["a", "b"]] * 4), "y": np.zeros(4)}, {"train_fraction": 0.5}, "values; allowed: numbers"),
    "NaN inputs": ({"x": np.full((4, 2), np.nan), "y": np.zeros(4)}, {"train_fraction": 0.5}, "NaN or infinite"),
    "negative labels": ({"x": np.zeros((4, 2)), "y": np.array([0, 1, -1, 0])}, {"train_fraction": 0.5}, "label -1"),
    "fractional labels": ({"x": np.zeros((4, 2)), "y": np.array([0, 0.5, 1, 0])}, {"train_fraction": 0.5},
                          "non-integer labels"),
    "mismatched lengths": ({"x": np.zeros((4, 2)), "y": np.zeros(3)}, {"train_fraction": 0.5},
                           "4 inputs in x but 3 targets in y"),
    "a label beyond n_classes": ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 2, 3])},
                                 {"train_fraction": 0.5, "n_classes": 3}, "has label 3"),
    "x and y without train_fraction": ({"x": np.zeros((4, 2)), "y": np.zeros(4)}, {}, "give the fraction"),
    "a split file with train_fraction": ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4), "x_test": np.zeros((2, 2)),
                                          "y_test": np.zeros(2)}, {"train_fraction": 0.5}, "is split already"),
    "features that differ": ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4), "x_test": np.zeros((2, 3)),
                              "y_test": np.zeros(2)}, {}, "x_train has 2 features, x_test 3"),
    "no test example": ({"x": np.zeros((2, 2)), "y": np.zeros(2)}, {"train_fraction": 0.9}, "0 test examples"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_data_file_is_one_line_naming_it(tmp_path: Path, case: str) -> None:
    held, fields, says = BAD[case]
    path = tmp_path / ("data.txt" if held == "text" else "data.npz")
    if isinstance(held, dict):
        _write(path, held)
    elif isinstance(held, bytes):
        path.write_bytes(held)
    elif held == "text":
        path.write_text("1,2,3")
    with pytest.raises(SpecError) as error:
        check_data(_task(path, **fields))
    message = str(error.value)
    assert message.startswith("task.") and "\n" not in message and says in message, message


# -- the same data from a function of the seed, or from arrays handed over in Python ------------------------


def modular_arrays(seed: int, modulus: int = P) -> dict[str, np.ndarray]:
    """A function task's factory: the (a + b) mod p table as one-hots, the same for every seed (groklab splits it)."""
    pairs, labels = modular_table(ModularTask(modulus=modulus))
    return {"x": np.concatenate([np.eye(modulus)[pairs[:, 0]], np.eye(modulus)[pairs[:, 1]]], axis=1), "y": labels}


def seeded_teacher(seed: int, n: int = 40) -> dict[str, torch.Tensor]:
    """A factory that draws its own data per seed (tensors, a regression, split by itself)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    return {"x_train": x[: n // 2], "y_train": y[: n // 2], "x_test": x[n // 2 :], "y_test": y[n // 2 :]}


def test_a_function_a_file_and_arrays_in_python_give_the_same_data(tmp_path: Path) -> None:
    x, y = _modular_table()
    path = _write(tmp_path / "table.npz", {"x": x, "y": y})
    sources = [_task(path, train_fraction=0.4), ArrayTask(x=x, y=torch.from_numpy(y), train_fraction=0.4),
               FunctionTask(factory=modular_arrays, kwargs={"modulus": P}, train_fraction=0.4, label_noise=0.2)]  # fmt: skip
    for seed in (0, 3):
        from_file, in_memory, from_function = (make_data(task, seed) for task in sources)
        for name in ("x_train", "y_train_clean", "x_test", "y_test"):
            assert torch.equal(getattr(in_memory, name), getattr(from_file, name))
            assert torch.equal(getattr(from_function, name), getattr(from_file, name))
        assert from_function.corrupted.sum() == round(0.2 * len(from_function.y_train)) > 0  # label noise per seed
    assert sources[1].path.startswith("memory:") and task_sizes(sources[2]).n_train == task_sizes(sources[0]).n_train


def test_a_function_draws_each_seeds_own_data_and_a_regression_trains() -> None:
    task = FunctionTask(factory=seeded_teacher, kind="regression")
    first, other = make_data(task, 0), make_data(task, 1)
    assert not torch.equal(first.x_train, other.x_train) and first.y_train.dtype == torch.float32
    config = RunConfig.model_validate({"task": task.model_dump(), "train": {"steps": 30, "loss": "mse"},
                                       "optimizer": {"name": "adamw", "lr": 0.05}})  # fmt: skip
    (result,) = train_stack([("r", config)])
    assert result.metrics["train_loss"][-1] < result.metrics["train_loss"][0] / 2


def _not_a_dict(seed: int) -> list[int]:
    return [seed]


def _raises(seed: int) -> dict[str, np.ndarray]:
    raise KeyError("no such dataset")


def _no_targets(seed: int) -> dict[str, np.ndarray]:
    return {"x": np.zeros((4, 2))}


def _nan(seed: int) -> dict[str, np.ndarray]:
    return {"x": np.full((4, 2), np.nan), "y": np.zeros(4)}


@pytest.mark.parametrize(
    ("factory", "says"),
    [(_not_a_dict, r"_not_a_dict\(seed=0\) returned a list; allowed: a dict of arrays"),
     (_raises, r"_raises\(seed=0\) raised KeyError: 'no such dataset'"),
     (_no_targets, r"_no_targets\(seed=0\) holds x; allowed: x_train, y_train, x_test, y_test, or x and y"),
     (_nan, r"_nan\(seed=0\): x holds NaN or infinite values"),
     ("no_such_module:data", r"task.factory: no_such_module:data does not import")],
    ids=["not-a-dict", "raises", "no-targets", "nan", "no-import"],
)  # fmt: skip
def test_a_bad_data_function_is_one_line_naming_it(factory: Any, says: str, tmp_path: Path) -> None:
    spec = {"task": {"name": "function", "factory": factory, "train_fraction": 0.5}, "train": {"steps": 5}}
    with pytest.raises(SpecError, match=says) as error:
        groklab.run(spec, out=tmp_path / "out", progress=False)
    assert str(error.value).startswith("task.") and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_what_other_processes_cannot_have_is_refused_with_workers(tmp_path: Path) -> None:
    x, y = _modular_table()
    spec = {"task": ArrayTask(x=x, y=y, train_fraction=0.5), "train": {"steps": 5}, "seeds": 2,
            "model": {"width": 8}, "sweep": {"model.width": [8, 16]}}  # fmt: skip
    with pytest.raises(SpecError, match="task: arrays given in Python stay in this process") as error:
        groklab.run(spec, out=tmp_path / "out", progress=False, workers=2)
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()
    result = groklab.run(spec, out=tmp_path / "here", progress=False)  # in this process they train
    assert len(result.rows) == 4
    assert list(result.meta["data_files"]) == [spec["task"].path]  # memory:SHA256, and that digest


def test_the_built_in_teacher_makes_its_data_as_a_function_task_does() -> None:
    """The teacher task is one module on the road your own data takes (task.name function): the same arrays, the
    teacher's direction beta kept with the run's data, the targets (beta . x)^2 / 2."""
    teacher = make_data(groklab.TeacherTask(dim=5, n_train=7, n_test=4), 3)
    function = FunctionTask(factory="groklab.data.teacher:teacher_arrays", kind="regression",
                            kwargs={"dim": 5, "n_train": 7, "n_test": 4})  # fmt: skip
    yours = make_data(function, 3)
    for name in ("x_train", "y_train", "x_test", "y_test", "corrupted"):
        assert torch.equal(getattr(teacher, name), getattr(yours, name))
    beta = torch.from_numpy(teacher.info["beta"]).float()
    torch.testing.assert_close(teacher.y_test, (teacher.x_test @ beta) ** 2 / 2)
    assert teacher.n_classes == 1 and not torch.equal(make_data(function, 4).x_train, yours.x_train)
