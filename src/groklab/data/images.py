"""Images as flat pixel vectors: scikit-learn's 8 x 8 digits, or MNIST from the IDX files at a path the user gives.

Nothing is downloaded. A run stores its images by reference (`train_index`, `test_index` into the dataset's
training / test images, with the labels), not as pixels: MNIST's test set alone is 31 MB per run in float32.
"""

from __future__ import annotations

import functools
import gzip
import math
from pathlib import Path

import numpy as np
import torch

from groklab.config import ImageTask, SpecError
from groklab.data.dataset import RunData, corrupt_labels
from groklab.seeds import rng_for

IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: "i2", 0x0C: "i4", 0x0D: "f4", 0x0E: "f8"}
"""IDX type byte -> numpy kind and size (stored big-endian), as LeCun's format page defines them."""

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class IdxError(ValueError):
    """An IDX file is missing or malformed; the message names it."""


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX encoding of `array` (the inverse of decode_idx): two zero bytes, the type byte, the number of
    dimensions, each size as a big-endian uint32, then the values big-endian, row-major.

    >>> encode_idx(np.array([[1, 2], [3, 4]], dtype=np.uint8)).hex()  # 0000 08 02 | 2 | 2 | 1 2 3 4
    '00000802000000020000000201020304'
    """
    kind = f"{array.dtype.kind}{array.dtype.itemsize}"
    code = {name: code for code, name in IDX_TYPES.items()}[kind]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(f">{kind}").tobytes()


def decode_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """The array an IDX file holds; IdxError naming `name` when the bytes are not one.

    >>> decode_idx(bytes.fromhex('000008020000000200000002' + '01020304')).tolist()
    [[1, 2], [3, 4]]
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise IdxError(f"{name}: not an IDX file (it starts with {raw[:4].hex() or 'nothing'}, not 0000 type ndim)")
    ndim, dtype = raw[3], np.dtype(f">{IDX_TYPES[raw[2]]}")
    if len(raw) < 4 + 4 * ndim:
        raise IdxError(f"{name}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = 4 + 4 * ndim + dtype.itemsize * int(np.prod(shape))
    if len(raw) != expected:
        raise IdxError(f"{name}: {len(raw)} bytes where an IDX array of shape {shape} takes {expected}")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)


MAX_IDX_BYTES = 2**30
"""The most bytes one IDX file may hold once decompressed (1 GiB; MNIST's largest is 47 MB, EMNIST's 0.7 GB): what
its header declares is checked before anything is read past it, so a file that says (or gunzips to) more is
refused, not read into memory."""


def read_idx(path: Path) -> np.ndarray:
    """The array in an IDX file, gzipped when its name ends in .gz: its header first, then exactly the bytes the
    header declares (IdxError if that is more than MAX_IDX_BYTES, or the file holds more or fewer)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
            raw = handle.read(4)
            if len(raw) == 4 and raw[:2] == b"\0\0" and raw[2] in IDX_TYPES:  # else decode_idx says what is wrong
                raw += handle.read(4 * raw[3])
                shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", count=(len(raw) - 4) // 4, offset=4))
                declared = len(raw) + np.dtype(IDX_TYPES[raw[2]]).itemsize * math.prod(shape)
                if declared > MAX_IDX_BYTES:
                    limit = MAX_IDX_BYTES / 2**30
                    raise IdxError(f"{path}: declares an array of {shape} ({declared:,} bytes); at most {limit:g} GiB")
                raw += handle.read(declared - len(raw) + 1)  # one byte more than declared: decode_idx sees a surplus
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise IdxError(f"{path}: cannot be read ({error})") from None
    return decode_idx(raw, str(path))


def mnist_file(directory: Path, stem: str) -> Path:
    """The file `stem` or `stem.gz` in `directory`; IdxError when neither is there."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise IdxError(f"{directory} has no {stem} (nor {stem}.gz)")


@functools.lru_cache(maxsize=2)
def _read_mnist(directory: str, _mtimes: tuple[float, ...]) -> dict[str, np.ndarray]:
    arrays = {key: read_idx(mnist_file(Path(directory), stem)) for key, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise IdxError(
                f"{directory}: {split} images of shape {images.shape} and labels of shape {labels.shape}; "
                "allowed: (n, rows, columns) images and n labels"
            )
        if labels.size and not 0 <= labels.min() <= labels.max() <= 9:
            raise IdxError(f"{directory}: {split} labels outside the digits 0..9")
    if arrays["train_images"].shape[1:] != (28, 28) or arrays["test_images"].shape[1:] != (28, 28):
        raise IdxError(f"{directory}: images of {arrays['train_images'].shape[1:]} pixels; MNIST's are 28 x 28")
    return arrays


def mnist(directory: str) -> dict[str, np.ndarray]:
    """MNIST's train/test images (uint8, n x 28 x 28) and labels from the IDX files in `directory`, read once
    per process while the files stay unchanged."""
    stems = [mnist_file(Path(directory), stem) for stem in MNIST_FILES.values()]
    return _read_mnist(str(Path(directory).resolve()), tuple(p.stat().st_mtime for p in stems))


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits: (1797, 64) pixel values 0..16 and labels 0..9."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SpecError(
            "task.dataset: digits needs scikit-learn (pip install 'groklab[images]'); or use mnist with task.path"
        ) from None
    bunch = load_digits()
    return bunch.data, bunch.target


def image_source(task: ImageTask) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(training pool pixels in [0, 1], its labels, test pool pixels, its labels), images flattened; for digits
    both pools are the same 1,797 images (a run's test images are then those not drawn for training)."""
    if task.dataset == "digits":
        pixels, labels = digits()
        x = (pixels / 16.0).astype(np.float32)
        return x, labels.astype(np.int64), x, labels.astype(np.int64)
    arrays = mnist(str(task.path))
    flat = {split: arrays[f"{split}_images"].reshape(len(arrays[f"{split}_images"]), -1) for split in ("train", "test")}
    return (
        (flat["train"] / 255.0).astype(np.float32),  # torchvision's ToTensor, as Omnigrok reads MNIST
        arrays["train_labels"].astype(np.int64),
        (flat["test"] / 255.0).astype(np.float32),
        arrays["test_labels"].astype(np.int64),
    )


def check_images(task: ImageTask) -> None:
    """Raise SpecError, naming the key, when the images cannot be read or hold fewer than a run asks for."""
    try:
        x_pool, _, x_test_pool, _ = image_source(task)
    except IdxError as error:
        raise SpecError(f"task.path: {error}") from None
    shared = task.dataset == "digits"
    if task.n_train > len(x_pool) - shared:
        raise SpecError(
            f"task.n_train: {task.n_train} is more than the {len(x_pool)} {task.dataset} training images; "
            f"allowed: 1..{len(x_pool) - shared}"
        )
    available = len(x_pool) - task.n_train if shared else len(x_test_pool)
    if task.n_test is not None and task.n_test > available:
        raise SpecError(f"task.n_test: {task.n_test} is more than the {available} test images; allowed: 1..{available}")
    if available == 0:
        raise SpecError(f"task.path: {task.path} has no test images")


def make_images(task: ImageTask, seed: int) -> RunData:
    """One run's images: n_train drawn from the training pool by the seed, the test images (all, or n_test drawn)
    from the test pool, less the training draw where the pools are one; label_noise of the training labels."""
    x_pool, y_pool, x_test_pool, y_test_pool = image_source(task)
    rng = rng_for(seed, "sample")
    train_index = np.sort(rng.choice(len(x_pool), size=task.n_train, replace=False))
    test_pool = np.arange(len(x_test_pool))
    if task.dataset == "digits":
        test_pool = np.setdiff1d(test_pool, train_index)
    test_index = np.sort(rng.choice(test_pool, size=task.n_test, replace=False)) if task.n_test else test_pool
    clean = y_pool[train_index]
    y_train, corrupted = corrupt_labels(clean, task.label_noise, task.n_labels, rng_for(seed, "noise"))
    return RunData(
        x_train=torch.from_numpy(x_pool[train_index]),
        y_train=torch.from_numpy(y_train),
        x_test=torch.from_numpy(x_test_pool[test_index]),
        y_test=torch.from_numpy(y_test_pool[test_index]),
        y_train_clean=torch.from_numpy(clean),
        corrupted=torch.from_numpy(corrupted),
        n_classes=task.n_labels,
        vocab=None,
        info={"train_index": train_index, "test_index": test_index},
        inputs_stored=False,
    )
