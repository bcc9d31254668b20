"""The images task: IDX files read as LeCun's format defines them (on small files written here), MNIST and
scikit-learn's digits sampled per seed, and an MLP trained on them through the engine."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from groklab import ImageTask, RunConfig, SpecError, make_data
from groklab.data import check_data, decode_idx, encode_idx, read_idx
from groklab.data.images import IdxError
from groklab.engine.loop import train_stack

MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_mnist(directory: Path, n_train: int = 40, n_test: int = 15, gz: bool = False) -> dict[str, np.ndarray]:
    """Four small IDX files in MNIST's layout: image i is filled with the value i (mod 256), label i mod 10."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for stem, n in zip(MNIST_STEMS, (n_train, n_train, n_test, n_test)):
        values = np.arange(n) + (0 if "train" in stem else 1000)
        array = (
            np.repeat((values % 256).astype(np.uint8), 28 * 28).reshape(n, 28, 28)
            if "images" in stem
            else (values % 10).astype(np.uint8)
        )
        raw = encode_idx(array)
        (directory / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(raw) if gz else raw)
        arrays[stem] = array
    return arrays


def test_idx_round_trip_for_every_type(tmp_path: Path) -> None:
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64):
        array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
        path = tmp_path / "a.idx"
        path.write_bytes(encode_idx(array))
        back = read_idx(path)
        assert back.dtype.kind == array.dtype.kind and back.shape == (2, 3, 4)
        np.testing.assert_array_equal(back, array)
    # the header by hand: 0 0, type 0x0C (int32), 1 dimension of 2, then 258 and -1 big-endian
    raw = bytes.fromhex("00000c010000000200000102ffffffff")
    assert decode_idx(raw).tolist() == [258, -1]


@pytest.mark.parametrize(
    "raw, says",
    [
        (b"", "not an IDX file"),
        (bytes.fromhex("01000801"), "not an IDX file"),  # first byte not 0
        (bytes.fromhex("00000701"), "not an IDX file"),  # type 7 does not exist
        (bytes.fromhex("0000080300000002"), "truncated IDX header"),  # 3 dimensions, one size
        (bytes.fromhex("000008010000000301"), "9 bytes where an IDX array of shape (3,) takes 11"),
        (bytes.fromhex("00000801000000010102"), "10 bytes where"),  # one value too many
    ],
)
def test_malformed_idx_is_refused_naming_the_file(raw: bytes, says: str) -> None:
    with pytest.raises(IdxError, match=r"^f\.idx: .*" + says.replace("(", r"\(").replace(")", r"\)")):
        decode_idx(raw, "f.idx")


def test_mnist_from_idx_files_per_seed(tmp_path: Path) -> None:
    for gz in (False, True):
        directory = tmp_path / f"mnist-{gz}"
        written = write_mnist(directory, gz=gz)
        task = ImageTask(dataset="mnist", path=str(directory), n_train=10)
        data = make_data(task, seed=0)
        index = data.info["train_index"]
        assert data.x_train.shape == (10, 784) and data.x_test.shape == (15, 784)  # the whole t10k file
        assert len(set(index.tolist())) == 10 and index.max() < 40
        # pixels / 255 row by row; labels as written
        np.testing.assert_allclose(data.x_train[:, 0].numpy(), (index % 256) / 255, rtol=1e-6)
        assert data.y_train.tolist() == written["train-labels-idx1-ubyte"][index].tolist()
        np.testing.assert_allclose(data.x_test[:, 5].numpy(), ((np.arange(15) + 1000) % 256) / 255, rtol=1e-6)
        assert data.y_test.tolist() == ((np.arange(15) + 1000) % 10).tolist()
    same, other = make_data(task, seed=0), make_data(task, seed=1)
    assert np.array_equal(same.info["train_index"], data.info["train_index"])
    assert not np.array_equal(other.info["train_index"], data.info["train_index"])
    drawn = make_data(task.model_copy(update={"n_test": 6}), seed=0)
    assert drawn.x_test.shape == (6, 784) and len(set(drawn.info["test_index"].tolist())) == 6


def test_digits_split_per_seed() -> None:
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    digits = load_digits()
    data = make_data(ImageTask(n_train=1000), seed=3)
    train, test = data.info["train_index"], data.info["test_index"]
    assert len(train) == 1000 and len(test) == 797 and not set(train) & set(test)  # every other image is test
    np.testing.assert_allclose(data.x_train.numpy(), digits.data[train] / 16, rtol=1e-6)
    assert data.y_test.tolist() == digits.target[test].tolist()
    assert data.x_train.min() >= 0 and data.x_train.max() == 1
    stored = data.arrays()
    assert "x_train" not in stored and "x_test" not in stored  # by reference: the indices name the images
    noisy = make_data(ImageTask(n_train=1000, label_noise=0.1), seed=3)
    assert int(noisy.corrupted.sum()) == 100 and (noisy.y_train != noisy.y_train_clean).sum() == 100


@pytest.mark.parametrize(
    "case, says",
    [
        ("no directory", "has no train-images-idx3-ubyte"),
        ("a file missing", "has no t10k-labels-idx1-ubyte"),
        ("malformed", "not an IDX file"),
        ("labels do not match", "train images of shape (40, 28, 28) and labels of shape (39,)"),
        ("not 28 x 28", "MNIST's are 28 x 28"),
        ("too many", "task.n_train: 41 is more than the 40 mnist training images; allowed: 1..40"),
        ("too many test", "task.n_test: 16 is more than the 15 test images"),
    ],
)
def test_bad_mnist_is_one_line_naming_the_key(case: str, says: str, tmp_path: Path) -> None:
    directory = tmp_path / "mnist"
    if case != "no directory":
        write_mnist(directory)
    n_train, n_test = (41 if case == "too many" else 10), (16 if case == "too many test" else None)
    if case == "a file missing":
        (directory / "t10k-labels-idx1-ubyte").unlink()
    if case == "malformed":
        (directory / "train-images-idx3-ubyte").write_bytes(b"not idx")
    if case == "labels do not match":
        (directory / "train-labels-idx1-ubyte").write_bytes(encode_idx(np.zeros(39, np.uint8)))
    if case == "not 28 x 28":
        (directory / "train-images-idx3-ubyte").write_bytes(encode_idx(np.zeros((40, 8, 8), np.uint8)))
    task = ImageTask(dataset="mnist", path=str(directory), n_train=n_train, n_test=n_test)
    with pytest.raises(SpecError) as error:
        check_data(task)
    message = str(error.value)
    assert says in message and "\n" not in message and message.startswith("task.")


def test_image_spec_errors() -> None:
    with pytest.raises(ValueError, match="task.path: dataset mnist needs the directory"):
        ImageTask(dataset="mnist")
    with pytest.raises(ValueError, match="task.path: dataset digits is scikit-learn's"):
        ImageTask(path="/somewhere")
    with pytest.raises(ValueError, match="model.name: images inputs are vectors"):
        RunConfig.model_validate({"task": {"name": "images"}, "model": {"name": "transformer"}})
    pytest.importorskip("sklearn")
    with pytest.raises(
        SpecError, match=r"task.n_train: 1797 is more than the 1797 digits training images; allowed: 1..1796"
    ):
        check_data(ImageTask(n_train=1797))


def test_an_mlp_learns_the_images_and_alpha_scales_its_init(tmp_path: Path) -> None:
    """Omnigrok's setup in miniature: MSE on one-hot targets, float64, the init scaled by alpha per run; the
    stack trains (train accuracy rises) and alpha = 4 starts with 4x the weight norm of alpha = 1."""
    directory = tmp_path / "mnist"
    write_mnist(directory, n_train=60, n_test=20)
    spec = {
        "task": {"name": "images", "dataset": "mnist", "path": str(directory), "n_train": 50},
        "model": {"name": "mlp", "width": 32, "depth": 2},
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
        "train": {"steps": 60, "batch_size": 25, "loss": "mse", "dtype": "float64", "eval_every": 20},
        "measures": {"names": ["weight_norms"]},
    }
    runs = [
        (f"run-{i}", RunConfig.model_validate({**spec, "model": {**spec["model"], "init_scale": alpha}}))
        for i, alpha in enumerate((1.0, 4.0))
    ]
    results = train_stack(runs, "cpu")
    norms = [r.metrics["weight_norm"][0] for r in results]
    assert norms[1] == pytest.approx(4 * norms[0], rel=1e-9)
    first = results[0].metrics
    assert first["train_acc"][-1] > first["train_acc"][0]
    assert results[0].state_dict["W_in"].dtype == torch.float64
