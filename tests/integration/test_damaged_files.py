"""Files groklab reads back, damaged as a crashed process, a full disk or a hand edit leaves them: each is a one-line
warning (what it concerns is left out, the rest is read) or a one-line error, never a traceback, in summary,
report, plot, measures --recompute and a resumed run. Hostile input to the spec and the options is in
test_bad_inputs.py; leases, checkpoints and links in test_durable.py."""

from __future__ import annotations

import errno
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file

import groklab
from groklab.store.reader import DamagedRunWarning

from .test_bad_inputs import TINY, _groklab


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-run experiment with weights at two steps and a vector measure, copied by each case."""
    root = tmp_path_factory.mktemp("stored") / "exp"
    spec = {**TINY, "measures": {"names": ["weight_norms", "embedding_fourier"], "snapshot_steps": [10, 20]}}
    groklab.run(spec, out=root, progress=False)
    return root


@pytest.fixture
def copy(stored: Path, tmp_path: Path) -> Path:
    root = tmp_path / "exp"
    shutil.copytree(stored, root)
    return root


def _one_warning(err: str, *says: str) -> None:
    assert err.startswith("warning: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(words in err for words in says), err


PROGRESS = {  # an unfinished run-0001's progress.json
    "missing fields": '{"run_id": "run-0001", "steps": 3}',
    "a wrong type": json.dumps(
        {"run_id": "run-0001", "seed": "one", "params": {}, "status": "running", "steps": 3, "final": {}}
    ),  # fmt: skip
    "not JSON": '{"run_id": "run-0',
    "a list": "[5]",
}


@pytest.mark.parametrize("kind", list(PROGRESS))
@pytest.mark.parametrize("command", ["summary", "report"])
def test_damaged_progress_is_a_warning_and_the_rest_is_read(
    kind: str, command: str, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy / "runs" / "run-0001"
    (run / "result.json").unlink()
    (run / "progress.json").write_text(PROGRESS[kind])
    code, out, err = _groklab(capsys, command, str(copy))
    assert code == 0, err
    _one_warning(err, "run-0001", "progress.json")
    if command == "summary":
        assert "run-0000" in out and "run-0001" not in out


@pytest.mark.parametrize("command", ["summary", "report"])
def test_a_meta_json_with_wrong_types_keeps_what_is_good(
    command: str, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "n_runs": "two", "state": 5, "wall_time_s": [1]}))
    code, out, err = _groklab(capsys, command, str(copy))
    assert code == 0, err
    _one_warning(err, "meta.json", "n_runs, state, wall_time_s")
    with pytest.warns(DamagedRunWarning):
        assert groklab.load(copy).meta["device"] == meta["device"]  # the good fields are kept


def test_a_resume_over_a_damaged_meta_json_warns_and_writes_it_anew(
    copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy / "meta.json").write_text('{"state": "fin')
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(yaml.safe_load((copy / "experiment.yaml").read_text())))
    code, _, err = _groklab(capsys, "run", str(spec), "--out", str(copy), "--quiet")
    assert code == 0, err
    _one_warning(err, "meta.json", "written anew")
    assert groklab.load(copy).meta["state"] == "finished"


@pytest.mark.parametrize("content", ["[5", "- a\n- b\n", "\x00\x01\x02"], ids=["malformed", "a list", "binary"])
def test_a_run_into_a_directory_whose_spec_is_damaged_is_one_line(
    content: str, copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy / "experiment.yaml").write_text(content)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    before = sorted(copy.rglob("*"))
    code, _, err = _groklab(capsys, "run", str(spec), "--out", str(copy), "--quiet")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "experiment.yaml" in err, err
    assert sorted(copy.rglob("*")) == before and (copy / "experiment.yaml").read_text() == content


CLAIMS = {  # stored claims a hand edit made, and what the page says of each
    "not a mapping": ([5], "not a claim"),
    "no params where the check needs them": ([{"claim": "c", "source": "s", "check": "step_at_most"}], "needs column"),
    "a limit that is not a number": ([{"claim": "c", "source": "s", "check": "step_at_most",
                                       "params": {"column": "memorized_step", "limit": "soon"}}], "is not a float"),
    "an unknown check": ([{"claim": "c", "source": "s", "check": "telepathy"}], "unknown check"),
    "params a list": ([{"claim": "c", "source": "s", "check": "memorizes_first", "params": [1]}], "not a mapping"),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(CLAIMS))
def test_a_stored_claim_that_cannot_be_checked_says_so_on_the_page(
    kind: str, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims, says = CLAIMS[kind]
    spec = yaml.safe_load((copy / "experiment.yaml").read_text())
    (copy / "experiment.yaml").write_text(yaml.safe_dump({**spec, "claims": claims}))
    code, out, err = _groklab(capsys, "report", str(copy))
    assert code == 0 and "Traceback" not in err, err
    page = Path(out.strip()).read_text()
    assert "cannot be checked" in page and says in page


def test_a_garbage_measures_file_is_one_warning_and_the_page_is_written(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy / "runs" / "run-0000" / "measures.npz").write_bytes(b"PK\x03\x04 not an archive")  # the one figures read
    code, out, err = _groklab(capsys, "report", str(copy))
    assert code == 0 and Path(out.strip()).is_file(), err
    _one_warning(err, "run-0000", "measures.npz", "left out")


def _snapshot(root: Path, run: str = "run-0001") -> Path:
    return root / "runs" / run / "weights" / "step-000000010.safetensors"


SNAPSHOTS = {  # damage to run-0001's stored weights or row, and what the warning names
    "a truncated snapshot": (lambda root: _snapshot(root).write_bytes(_snapshot(root).read_bytes()[:100]), "damaged"),
    "an empty snapshot": (lambda root: _snapshot(root).write_bytes(b""), "damaged"),
    "another width's weights": (
        lambda root: save_file({n: (t[:, :8] if t.ndim == 2 and t.shape[1] == 16 else t[:8]).contiguous()
                                for n, t in load_file(str(_snapshot(root))).items()}, str(_snapshot(root))),
        "where this run's model has",
    ),
    "a row with a wrong-typed param": (
        lambda root: (root / "runs" / "run-0001" / "result.json").write_text(json.dumps({
            **(row := json.loads((root / "runs" / "run-0001" / "result.json").read_text())),
            "params": {**row["params"], "model.width": "wide"}})),
        "model.width",
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(SNAPSHOTS))
def test_recompute_skips_a_run_whose_stored_files_are_damaged_or_foreign(
    kind: str, copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damage, says = SNAPSHOTS[kind]
    damage(copy)
    code, out, err = _groklab(capsys, "measures", str(copy), "--recompute", "weight_norms")
    assert code == 0, err
    _one_warning(err, "run-0001", says, "skipped")
    assert "run-0000" in out and "run-0001" not in out


def test_recompute_with_every_run_damaged_is_one_line_exit_2(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for run in ("run-0000", "run-0001"):
        _snapshot(copy, run).write_bytes(b"")
    code, _, err = _groklab(capsys, "measures", str(copy), "--recompute", "weight_norms")
    assert code == 2 and err.splitlines()[-1].startswith("error: ") and "no run" in err, err
    assert not (copy / "recomputed").exists() or not any((copy / "recomputed").iterdir())


@pytest.mark.parametrize(
    "command", [["plot"], ["report"], ["measures", "--recompute", "weight_norms"]], ids=lambda c: c[0]
)
def test_a_read_only_directory_is_one_line_exit_2(
    command: list[str], copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only mount (tests run as root here, for whom permissions do not refuse: the filesystem's error is
    raised where groklab creates a directory or a file)."""
    before = sorted(copy.rglob("*"))

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(copy))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(Path, "mkdir", read_only)
    arguments = [command[0], str(copy), *command[1:]]
    code, _, err = _groklab(capsys, *arguments)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "cannot write there (Read-only file system)" in err
    monkeypatch.undo()
    assert sorted(copy.rglob("*")) == before
