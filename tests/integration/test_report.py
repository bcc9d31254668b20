"""Figures and the HTML report: every figure kind renders something, the page loads in a real browser."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import yaml

import groklab
from groklab.figures import FIGURES, applicable, plot
from groklab.html_report import report

SPEC = {
    "name": "modular-addition",  # a built-in's name: the report names the settings changed from it
    "claims": yaml.safe_load(groklab.builtin_specs()["modular-addition"].read_text())["claims"],
    "task": {"modulus": 23, "train_fraction": 0.5, "label_noise": 0.05},
    "model": {"width": 64, "activation": "quadratic", "bias": False, "init": "gromov"},
    "optimizer": {"lr": 0.01, "weight_decay": 5.0, "betas": [0.9, 0.98]},
    "train": {"steps": 60, "loss": "mse", "eval_every": 5},
    "measures": {"names": "all", "representation_steps": [0, 30, 60], "representation_inputs": 64},
    "sweep": {"optimizer.weight_decay": [1.0, 5.0], "model.batchnorm": [False, True]},
}
TOY_FIGURES = ["effective_theory"]  # Liu et al.'s addition toy only: drawn by the test below
SLINGSHOT_FIGURES = ["slingshots"]  # runs with slingshots only: drawn in tests/unit/test_slingshot.py
SIZE_FIGURES = ["ungrokking"]  # variants over a shrinking training set only: drawn by the test below
DRAWN = [name for name in FIGURES if name not in TOY_FIGURES + SLINGSHOT_FIGURES + SIZE_FIGURES]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> groklab.ExperimentResult:
    out = tmp_path_factory.mktemp("report") / "exp"
    return groklab.run(SPEC, out=out, progress=False)


@pytest.fixture(scope="module")
def page(experiment: groklab.ExperimentResult) -> Path:
    return report(experiment.root)


def _ink(fig: plt.Figure) -> float:
    """Fraction of the figure's pixels that are not background."""
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    return float((pixels.min(-1) < 240).mean())


def test_every_figure_kind_is_drawn_and_not_empty(experiment: groklab.ExperimentResult) -> None:
    assert applicable(experiment) == DRAWN  # every kind but the toy's, the slingshots' (none in 60 steps), ungrokking's
    for name, fig in plot(experiment).items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        assert buffer.tell() > 5_000, name
        assert _ink(fig) > 0.02, f"{name} is (nearly) blank"
        plt.close(fig)


@pytest.mark.parametrize(("builtin", "figures"), [("liu-toy", TOY_FIGURES), ("varma-ungrokking", SIZE_FIGURES)])
def test_the_figures_of_one_kind_of_experiment_are_drawn(builtin: str, figures: list[str], tmp_path: Path) -> None:
    result = groklab.run(builtin, out=tmp_path / builtin, progress=False, quick=True)
    assert set(figures) <= set(applicable(result))
    for name, fig in plot(result, figures).items():
        assert _ink(fig) > 0.02, f"{name} is (nearly) blank"
        plt.close(fig)


def test_figures_without_data_say_so(tmp_path: Path) -> None:
    result = groklab.run({**SPEC, "sweep": {}, "measures": {"names": "none"}}, out=tmp_path / "bare", progress=False)
    assert applicable(result) == ["curves", "measures", "neurons"]
    (fig,) = plot(result, ["tsne"]).values()
    assert "no representations stored" in fig.axes[0].texts[0].get_text()


def test_cli_plot_and_report(experiment: groklab.ExperimentResult, tmp_path: Path) -> None:
    def groklab_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "groklab", *args], capture_output=True, text=True, timeout=600)

    result = groklab_cli("plot", str(experiment.root), "--what", "curves", "--what", "sweep", "--format", "svg")
    assert result.returncode == 0, result.stderr
    assert (experiment.root / "figures" / "sweep.svg").stat().st_size > 5_000
    bad = groklab_cli("plot", str(experiment.root), "--format", "gif")
    assert (
        bad.returncode == 2 and bad.stderr.strip() == "error: --format gif: not a figure format; allowed: png, svg, pdf"
    )
    missing = groklab_cli("report", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


def test_report_and_index_pages(experiment: groklab.ExperimentResult, page: Path) -> None:
    text = page.read_text()
    assert text.count("data:image/png;base64,") == len(DRAWN)
    assert "The source's claims" in text and "task.label_noise=0.05" in text  # changes from the built-in named
    assert f"Made by <code>groklab run SPEC --out {experiment.root}</code>" in text  # the command, from Python
    assert text.count("<tr>") >= 4 + 1 and "http" not in text.split("<body>")[1].split("<h2>Environment")[0]
    index = report(experiment.root.parent)
    assert index.name == "index.html" and "exp/report.html" in index.read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install chromium)")
def test_report_loads_in_headless_chromium_without_console_errors(
    experiment: groklab.ExperimentResult, page: Path, tmp_path: Path
) -> None:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    shown = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=120
    )
    dom = shown.stdout
    assert 'data-ready="1"' in dom, shown.stderr[-2000:]  # the page's script ran to its end
    assert dom.count("<img") == len(DRAWN) and dom.count("data:image/png;base64,") == len(DRAWN)
    assert dom.count("<td>run-") == len(experiment.runs)
    console = [line for line in shown.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
