"""A plugin package, pip-installed with its entry point, adds a measure, a claims check and a figure that the command
line trains, lists, checks, draws and reports, naming the package; a plugin that fails to import is one warning
line and the built-ins work on. The packages are tests/plugin_example and tests/plugin_broken."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .test_bad_inputs import TINY as BAD_INPUTS_TINY
from .waiting import DEADLINE

PACKAGES = Path(__file__).parents[1]

TINY: dict[str, Any] = {**BAD_INPUTS_TINY, "name": "plugged", "train": {"steps": 40, "eval_every": 10, "loss": "mse"}}


def _install(target: Path, *packages: str) -> Path:
    """pip install the packages (entry points and all) into `target`, which the commands then have on their path.
    Each is built from a copy, so that the build leaves nothing in the source tree."""
    sources = [shutil.copytree(PACKAGES / package, target.parent / f"{target.name}-{package}") for package in packages]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
               "--target", str(target), *map(str, sources)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=DEADLINE)
    return target


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _install(tmp_path_factory.mktemp("site"), "plugin_example")


@pytest.fixture(scope="module")
def with_broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _install(tmp_path_factory.mktemp("site"), "plugin_example", "plugin_broken")


def _groklab(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "groklab", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=DEADLINE, env={**os.environ, "PYTHONPATH": path})  # fmt: skip


def test_a_plugin_s_measure_is_listed_with_its_package(example: Path) -> None:
    listed = _groklab(example, "measures")
    assert listed.returncode == 0 and not listed.stderr, listed.stderr
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith("max_logit")]
    assert line.endswith("[groklab-example]") and " optional " in line  # chosen by name, never by default
    assert "llc" in listed.stdout and "[groklab]" not in listed.stdout  # the built-ins, as before
    shown = _groklab(example, "measures", "max_logit")
    assert shown.returncode == 0 and "package: groklab-example" in shown.stdout


def test_a_plugin_is_trained_checked_drawn_and_reported_end_to_end(example: Path, tmp_path: Path) -> None:
    spec = tmp_path / "plugged.yaml"
    claim = {"claim": "the logits stay small", "source": "a test", "check": "max_logit_below", "params": {"limit": 1e6}}
    spec.write_text(yaml.safe_dump({**TINY, "measures": {"names": ["max_logit"]}, "claims": [claim]}))
    out = tmp_path / "out"
    trained = _groklab(example, "run", str(spec), "--out", str(out), "--quiet")
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(_groklab(example, "summary", str(out), "--json").stdout)
    assert len(summary) == 2
    drawn = _groklab(example, "plot", str(out), "--what", "max_logit")
    assert drawn.returncode == 0 and (out / "figures" / "max_logit.png").is_file(), drawn.stderr
    reported = _groklab(example, "report", str(out))
    assert reported.returncode == 0, reported.stderr
    page = (out / "report.html").read_text()
    assert "by groklab-example" in page and "median final max_logit" in page  # the claim, checked by the plugin
    assert "the largest training logit over steps (from groklab-example)" in page  # its figure
    # Without the plugin the stored claim cannot be checked, and the page says so instead of failing.
    bare = subprocess.run([sys.executable, "-m", "groklab", "report", str(out)], capture_output=True, text=True,
                          timeout=DEADLINE)  # fmt: skip
    assert bare.returncode == 0 and "unknown check &#x27;max_logit_below&#x27;" in (out / "report.html").read_text()


def test_an_installed_package_provides_a_model_and_a_dataset_by_import_path(example: Path, tmp_path: Path) -> None:
    spec = tmp_path / "lab.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "lab", "seeds": 2, "train": {"steps": 20, "eval_every": 10},
        "task": {"name": "function", "factory": "groklab_example.lab:subtraction", "kwargs": {"p": 11},
                 "train_fraction": 0.5},
        "model": {"name": "module", "factory": "groklab_example.lab:make_model", "kwargs": {"p": 11}},
        "measures": {"names": ["max_logit", "weight_norms"]},
    }))  # fmt: skip
    out = tmp_path / "out"
    trained = _groklab(example, "run", str(spec), "--out", str(out), "--quiet", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert [made["factory"] for made in meta["code"]] == ["groklab_example.lab:make_model",
                                                          "groklab_example.lab:subtraction"]  # fmt: skip
    assert all(made["file"].startswith(str(example)) and len(made["sha256"]) == 64 for made in meta["code"])
    summary = json.loads(_groklab(example, "summary", str(out), "--json").stdout)
    assert [row["status"] for row in summary] == ["completed", "completed"]


def test_a_plugin_measure_is_not_a_default_one(example: Path, tmp_path: Path) -> None:
    spec = tmp_path / "plain.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    assert _groklab(example, "run", str(spec), "--out", str(tmp_path / "out"), "--quiet").returncode == 0
    import groklab

    assert "max_logit" not in groklab.load(tmp_path / "out").metrics.columns


def test_a_plugin_that_fails_to_import_is_one_warning_line_and_the_rest_works(
    with_broken: Path, tmp_path: Path
) -> None:
    listed = _groklab(with_broken, "measures")
    assert listed.returncode == 0 and "max_logit" in listed.stdout and "llc" in listed.stdout
    (warning,) = listed.stderr.splitlines()
    assert warning.startswith("warning: plugin broken (groklab-broken: groklab_broken.plugin) cannot be imported")
    assert "ImportError: groklab_broken needs a package that is not installed" in warning
    spec = tmp_path / "plain.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    trained = _groklab(with_broken, "run", str(spec), "--out", str(tmp_path / "out"), "--quiet")
    assert trained.returncode == 0 and trained.stderr.count("warning: plugin broken") == 1, trained.stderr
