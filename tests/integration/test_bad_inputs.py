"""Bad inputs through the real command line (groklab.cli.main, in process): each is one line on stderr naming
what is wrong, exit status 2 (a damaged run: a one-line warning, the rest read), no traceback, and nothing
written. The table holds over 100 inputs: spec values, overrides, sweeps, names, output paths, devices,
spec files, and stored experiments damaged in each way. Signal and fault tests are in test_faults.py."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import groklab
from groklab.cli import main

TINY = {
    "name": "tiny",
    "task": {"name": "modular", "modulus": 11, "train_fraction": 0.5},
    "model": {"name": "mlp", "width": 16, "activation": "quadratic", "bias": False},
    "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 1.0},
    "train": {"steps": 20, "eval_every": 5, "loss": "mse"},
    "seeds": 2,
}

SETS = [  # --set KEY=VALUE on the tiny spec; each must be refused
    # true/false where a number belongs
    *(f"{k}=true" for k in ("optimizer.lr", "optimizer.eps", "model.width", "model.depth", "train.steps", "seeds")),
    *(f"{k}=false" for k in ("optimizer.weight_decay", "task.modulus", "task.train_fraction", "model.init_scale")),
    "optimizer.betas=[true, 0.9]",
    "optimizer.on_memorized.lr=true",
    "train.eval_every=true",
    "measures.every=true",
    # infinities and NaN, nested keys and event switches included
    *(f"optimizer.lr={v}" for v in (".inf", ".nan", "-.inf")),
    *(f"{k}=.inf" for k in ("optimizer.weight_decay", "optimizer.eps", "model.init_scale", "train.memory_gb")),
    *(f"{k}=.nan" for k in ("optimizer.eps", "model.init_scale", "task.train_fraction", "task.label_noise")),
    *(f"{k}=.nan" for k in ("train.settle_tolerance", "model.dropout", "measures.rqi.delta")),
    "optimizer.on_memorized.lr=.nan",
    "optimizer.on_memorized.weight_decay=.inf",
    "optimizer.on_generalized.eps=.nan",
    "optimizer.betas=[.nan, 0.9]",
    "measures.weight_sparsity.threshold=.inf",
    # out of range
    "optimizer.lr=0",
    "optimizer.lr=-1",
    "optimizer.weight_decay=-1",
    "optimizer.eps=0",
    "optimizer.momentum=0.5",
    "optimizer.betas=[1, 0.9]",
    "optimizer.betas=[0.9]",
    "optimizer.warmup_steps=-1",
    "task.train_fraction=0",
    "task.train_fraction=1",
    "task.train_fraction=1.5",
    "task.train_fraction=1e-9",
    "task.label_noise=1",
    "task.label_noise=-0.1",
    "task.modulus=1",
    "task.holdout_labels=[99]",
    "task.holdout_labels=[0,1,2,3,4,5,6,7,8,9,10]",
    "model.width=0",
    "model.depth=0",
    "model.dropout=1",
    "model.embedding_dim=0",
    "train.steps=0",
    "train.steps=-5",
    "train.eval_every=0",
    "train.batch_size=0",
    "train.stop_after_generalized=-1",
    "train.settle_tolerance=2",
    "train.memory_gb=0",
    "measures.every=0",
    "measures.representations.steps=[-5]",
    "measures.representations.steps=[100000]",
    "measures.restricted_excluded.key_frequencies=[0]",
    "measures.restricted_excluded.key_frequencies=[99]",
    "measures.names=[nope]",
    "measures.names=some",
    "optimizer.on_memorized.lr=0",
    "optimizer.on_memorized.weight_decay=-1",
    "optimizer.on_memorized.momentum=0.1",
    "seeds=0",
    "seeds=[-1]",
    "seeds=[]",
    "seeds=[1, 1]",
    # names that are not names
    "task.operation=pow",
    "model.activation=softmax",
    "model.name=cnn",
    "task.name=vision",
    "optimizer.name=lion",
    "train.loss=l1",
    "train.dtype=float16",
    "nope=1",
    "task.nope=1",
    "model.nope=1",
    "optimizer.nope=1",
    # what cannot be made or cannot fit
    "task.modulus=100003",
    "model.width=10000000",
    "train.steps=1000000000000000",
    "train.memory_gb=0.000001",
    "seeds=100001",
    # experiment names that are paths
    "name=../../x",
    "name=/abs",
    "name=a/b",
    "name=..",
    "name=''",
    # malformed overrides
    "noequals",
    "=1",
    "optimizer.lr=[unclosed",
]
SWEEPS = [
    ["--sweep", "optimizer.lr=0.1,0.1"],
    ["--sweep", "optimizer.weight_decay=1,1.0"],
    ["--sweep", "nope.x=1,2"],
    ["--sweep", "optimizer.lr="],
    ["--sweep", "optimizer.lr=true,0.1"],
    ["--sweep", "task.modulus=11,1"],
    ["--sweep", "optimizer.lr=.nan,0.1"],
    ["--sweep", "noequals"],
    [
        "--sweep",
        "optimizer.lr=" + ",".join(str(i + 1) for i in range(1000)),
        "--sweep",
        "optimizer.weight_decay=" + ",".join(str(i) for i in range(1000)),
    ],  # fmt: skip
]
ARGS = [
    ["--device", "tpu"],
    ["--device", "cuda:x"],
    ["--workers", "0"],
    ["--threads", "0"],
    ["--threads", "two"],
    ["--quick"],
]


def _groklab(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command line in this process: (exit status, stdout, stderr)."""
    argv = sys.argv
    sys.argv = ["groklab", *args]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 0
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out, err


def _refused(code: int, err: str, out_dir: Path) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line
    assert "Traceback" not in err
    assert not out_dir.exists()  # nothing written


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.mark.parametrize("override", SETS)
def test_a_bad_value_is_refused_before_anything_is_written(
    override: str, spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, err = _groklab(capsys, "run", str(spec), "--set", override, "--out", str(out), "--quiet")
    _refused(code, err, out)


@pytest.mark.parametrize("args", SWEEPS + ARGS, ids=lambda a: " ".join(a)[:40])
def test_a_bad_sweep_or_option_is_refused(
    args: list[str], spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, err = _groklab(capsys, "run", str(spec), *args, "--out", str(out), "--quiet")
    _refused(code, err, out)


def _file_case(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.yaml"
    contents: dict[str, str | bytes] = {
        "empty": "",
        "comment only": "# nothing here\n",
        "list": "- a\n- b\n",
        "scalar": "42\n",
        "malformed": "task: {modulus: [\n",
        "binary": bytes(range(256)) * 4,
        "tabs": "task:\n\tmodulus: 5\n",
        "unknown top key": "nope: 1\n",
        "name a path": "name: ../../escape\n",
        "absolute name": "name: /tmp/escape\n",
    }
    if kind == "missing":
        return tmp_path / "missing.yaml"
    if kind == "directory":
        (tmp_path / "a-directory.yaml").mkdir()
        return tmp_path / "a-directory.yaml"
    content = contents[kind]
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


@pytest.mark.parametrize(
    "kind",
    [
        "empty",
        "comment only",
        "list",
        "scalar",
        "malformed",
        "binary",
        "tabs",
        "unknown top key",
        "name a path",
        "absolute name",
        "missing",
        "directory",
    ],  # fmt: skip
)
def test_a_bad_spec_file_is_refused(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = _groklab(capsys, "run", str(_file_case(kind, tmp_path)), "--out", str(out), "--quiet")
    _refused(code, err, out)


def _out_case(kind: str, tmp_path: Path) -> str:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    return {
        "empty": "",
        "blank": "  ",
        "a file": str(a_file),
        "under a file": str(a_file / "exp"),
        "300-character name": str(tmp_path / ("x" * 300)),
        "a symbolic link": str(tmp_path / "link"),
    }[kind]


@pytest.mark.parametrize("kind", ["empty", "blank", "a file", "under a file", "300-character name", "a symbolic link"])
def test_a_bad_output_path_is_refused(
    kind: str, spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _out_case(kind, tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err = _groklab(capsys, "run", str(spec), "--out", out, "--quiet")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not (Path.cwd() / "experiment.yaml").exists()


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-run experiment, copied and damaged by each case."""
    root = tmp_path_factory.mktemp("stored") / "exp"
    groklab.run(TINY, out=root, progress=False)
    return root


def _damage(root: Path, kind: str) -> None:
    run = root / "runs" / "run-0001"
    damages: dict[str, Callable[[], object]] = {
        "truncated result.json": lambda: (run / "result.json").write_text('{"run_id": "run-0'),
        "result.json not an object": lambda: (run / "result.json").write_text("[1, 2]"),
        "result.json missing fields": lambda: (run / "result.json").write_text('{"run_id": "run-0001"}'),
        "result.json with a bad final": lambda: (run / "result.json").write_text(
            json.dumps({**json.loads((run / "result.json").read_text()), "final": {"train_acc": 1.0}})
        ),
        "binary result.json": lambda: (run / "result.json").write_bytes(bytes(range(256))),
        "corrupt parquet": lambda: (run / "metrics.parquet").write_bytes(b"PAR1 not really"),
        "missing parquet": lambda: (run / "metrics.parquet").unlink(),
    }
    damages[kind]()


DAMAGED_RUNS = ["truncated result.json", "result.json not an object", "result.json missing fields",
                "result.json with a bad final", "binary result.json", "corrupt parquet", "missing parquet"]  # fmt: skip


@pytest.mark.parametrize("kind", DAMAGED_RUNS)
@pytest.mark.parametrize("command", ["summary", "summary --json"])
def test_a_damaged_run_is_skipped_with_a_warning(
    kind: str, command: str, stored: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "exp"
    shutil.copytree(stored, root)
    _damage(root, kind)
    code, out, err = _groklab(capsys, *command.split()[:1], str(root), *command.split()[1:])
    assert code == 0, err
    assert err.startswith("warning: ") and err.count("\n") == 1 and "run-0001" in err and "Traceback" not in err
    assert "run-0000" in out and "run-0001" not in out  # the rest is read


DAMAGED_EXPERIMENTS: dict[str, Callable[[Path], object]] = {
    "truncated meta.json": lambda root: (root / "meta.json").write_text('{"state": "fin'),
    "meta.json a list": lambda root: (root / "meta.json").write_text("[]"),
    "list-valued experiment.yaml": lambda root: (root / "experiment.yaml").write_text("- a\n- b\n"),
    "malformed experiment.yaml": lambda root: (root / "experiment.yaml").write_text("task: {modulus: [\n"),
    "binary experiment.yaml": lambda root: (root / "experiment.yaml").write_bytes(bytes(range(256))),
    "no experiment.yaml": lambda root: (root / "experiment.yaml").unlink(),
}
"""Damage to an experiment's own files (not a run's), by name."""


@pytest.mark.parametrize("kind", list(DAMAGED_EXPERIMENTS))
@pytest.mark.parametrize("command", ["summary", "report", "plot"])
def test_a_damaged_experiment_is_one_line(
    kind: str, command: str, stored: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "exp"
    shutil.copytree(stored, root)
    DAMAGED_EXPERIMENTS[kind](root)
    before = sorted(p.name for p in root.rglob("*"))
    code, _, err = _groklab(capsys, command, str(root))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in root.rglob("*")) == before


def test_summary_json_is_strict_json(stored: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "exp"
    shutil.copytree(stored, root)
    path = root / "runs" / "run-0000" / "result.json"
    row = json.loads(path.read_text())
    path.write_text(json.dumps({**row, "final": {**row["final"], "train_loss": float("nan")}}))  # a diverged run
    code, out, _ = _groklab(capsys, "summary", str(root), "--json")
    rows = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert code == 0 and rows[0]["final"]["train_loss"] is None


def test_a_failed_start_leaves_a_directory_the_corrected_command_reuses(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "experiment.yaml").write_text(yaml.safe_dump({**TINY, "seeds": 3}))  # an earlier spec, no finished run
    code, _, err = _groklab(capsys, "run", str(spec), "--out", str(out), "--quiet")
    assert code == 0, err
    assert len(groklab.load(out).runs) == 2


IMAGE_CASES = {  # the images task through the command line: (MNIST written?, files then replaced, --set, says)
    "no such directory": (False, {}, ["task.path={root}/nowhere"], "has no train-images-idx3-ubyte"),
    "a directory without IDX files": (False, {}, [], "has no train-images-idx3-ubyte"),
    "a malformed IDX file": (True, {"t10k-images-idx3-ubyte": b"\x00\x00\x08"}, [], "not an IDX file"),
    "a truncated IDX file": (True, {"train-labels-idx1-ubyte": b"\x00\x00\x08\x03\x00\x00\x00\x02"}, [], "truncated"),
    "a subset larger than the data": (True, {}, ["task.n_train=13"], "task.n_train: 13 is more than the 12"),
    "mnist without a path": (True, {}, ["task.path=null"], "task.path: dataset mnist needs the directory"),
    "a path with digits": (True, {}, ["task.dataset=digits"], "task.path: dataset digits is scikit-learn's"),
    "an IDX file declaring a terabyte": (
        True,
        {"train-images-idx3-ubyte": bytes([0, 0, 8, 3]) + (10**6).to_bytes(4, "big") + (10**3).to_bytes(4, "big") * 2},
        [],
        "at most 1 GiB",
    ),
    "a gzip that inflates past its header": (
        True,
        {"train-labels-idx1-ubyte.gz": gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 12]) + bytes(10**7))},
        [],
        "where an IDX array of shape (12,) takes",
    ),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_bad_image_data_is_refused(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.unit.test_images import write_mnist

    written, files, sets, says = IMAGE_CASES[case]
    data = tmp_path / "mnist"
    data.mkdir()
    if written:
        write_mnist(data, n_train=12, n_test=4)
    for name, raw in files.items():
        (data / name.removesuffix(".gz")).unlink(missing_ok=True)
        (data / name).write_bytes(raw)
    spec = {**TINY, "task": {"name": "images", "dataset": "mnist", "path": str(data), "n_train": 8}}
    path = tmp_path / "images.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    overrides = [arg for s in sets for arg in ("--set", s.format(root=tmp_path))]
    code, _, err = _groklab(capsys, "run", str(path), *overrides, "--out", str(out), "--quiet")
    _refused(code, err, out)
    assert says in err, err


@pytest.mark.parametrize("key", ["model.wid\u200bth", "model.width\u202e", "model.\x1b[31mwidth"],
                         ids=["zero-width space", "right-to-left override", "terminal escape"])  # fmt: skip
def test_an_invisible_character_in_a_key_is_shown_escaped(
    key: str, spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, err = _groklab(capsys, "run", str(spec), "--set", f"{key}=3", "--out", str(out), "--quiet")
    _refused(code, err, out)
    assert err[:-1].isprintable(), repr(err)  # nothing raw but the final newline
    assert ascii(key)[1:-1] in err, err  # the key as typed, its invisible character written as its escape


@pytest.mark.parametrize("variable", ["OMP_NUM_THREADS=abc", "SLURM_CPUS_PER_TASK=0"])  # GROKLAB_*: test_cli.py
def test_a_bad_environment_variable_is_refused(
    variable: str, spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, value = variable.split("=")
    monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    code, _, err = _groklab(capsys, "run", str(spec), "--out", str(out), "--quiet")
    _refused(code, err, out)
    assert err.startswith(f"error: {variable}"), err


def test_threads_limits_the_plan_and_is_kept_in_the_command(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _groklab(capsys, "run", str(spec), "--out", str(tmp_path / "out"), "--threads", "1", "--quiet")
    assert code == 0, err
    meta = groklab.load(tmp_path / "out").meta
    assert meta["plan"]["threads_per_worker"] == 1 and meta["plan"]["cpu_budget"] == "1 (--threads)"
    assert meta["overrides"]["threads"] == 1


def test_your_own_data_trains_from_a_csv_and_a_bad_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """task arrays through the command line: the file's SHA-256 kept in meta.json; a file with NaN refused before
    anything is written."""
    import hashlib

    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "data.csv"
    rows = ["f0,f1,f2,y"] + [f"{a:.3f},{b:.3f},{c:.3f},{int(a > 0)}" for a, b, c in rng.normal(size=(40, 3))]
    data.write_text("\n".join(rows) + "\n")
    spec = tmp_path / "own.yaml"
    spec.write_text(yaml.safe_dump({**TINY, "task": {"name": "arrays", "path": str(data), "train_fraction": 0.5}}))
    code, _, err = _groklab(capsys, "run", str(spec), "--out", str(tmp_path / "out"), "--quiet")
    assert code == 0, err
    result = groklab.load(tmp_path / "out")
    assert len(result.runs) == 2 and set(result.runs["task.path"]) == {str(data)}
    assert result.meta["data_files"] == {str(data.resolve()): hashlib.sha256(data.read_bytes()).hexdigest()}
    data.write_text("f0,y\nnan,1\n0.5,0\n")
    code, _, err = _groklab(capsys, "run", str(spec), "--out", str(tmp_path / "never"), "--quiet")
    _refused(code, err, tmp_path / "never")
    assert "NaN or infinite" in err
