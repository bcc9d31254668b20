"""Figures and the HTML report: every figure kind renders something, the page loads in a real browser."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.image import imread

import groklab
from groklab.figures import DPI, FIGURES, applicable, plot, save_figures
from groklab.figures.analysis import _run as pick_run
from groklab.figures.style import PAPER, TEST
from groklab.html_report import report

from .waiting import DEADLINE

SPEC = {
    "name": "modular-addition",  # a built-in's name: the report names the settings changed from it
    "claims": yaml.safe_load(groklab.builtin_specs()["modular-addition"].read_text())["claims"],
    "task": {"modulus": 23, "train_fraction": 0.5, "label_noise": 0.05},
    "model": {"width": 64, "activation": "quadratic", "bias": False, "init": "gromov"},
    "optimizer": {"lr": 0.01, "weight_decay": 5.0, "betas": [0.9, 0.98]},
    "train": {"steps": 60, "loss": "mse", "eval_every": 5},
    "measures": {"names": "all", "representations": {"steps": [0, 30, 60], "inputs": 64}},
    "sweep": {"optimizer.weight_decay": [1.0, 5.0], "model.batchnorm": [False, True]},
}
TOY_FIGURES = ["effective_theory"]  # Liu et al.'s addition toy only: drawn by the test below
SLINGSHOT_FIGURES = ["slingshots"]  # runs with slingshots only: drawn in tests/unit/test_slingshot.py
SIZE_FIGURES = ["ungrokking"]  # variants over a shrinking training set only: drawn by the test below
RACE_FIGURES = ["race"]  # an experiment with a leaderboard claim only: drawn by the test below
RFM_FIGURES = ["rfm_features"]  # a kernel machine's stored feature matrices only: drawn in tests/unit/test_rfm.py
OTHERS = TOY_FIGURES + SLINGSHOT_FIGURES + SIZE_FIGURES + RACE_FIGURES + RFM_FIGURES
DRAWN = [name for name in FIGURES if name not in OTHERS]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> groklab.ExperimentResult:
    out = tmp_path_factory.mktemp("report") / "exp"
    return groklab.run(SPEC, out=out, progress=False)


@pytest.fixture(scope="module")
def page(experiment: groklab.ExperimentResult) -> Path:
    return report(experiment.root)


def _ink(fig: Figure) -> float:
    """Fraction of the figure's pixels that are not background."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(float)
    return float((pixels.min(-1) < 240).mean())


def test_every_figure_kind_is_drawn_and_not_empty(experiment: groklab.ExperimentResult) -> None:
    assert applicable(experiment) == DRAWN  # every kind but the toy's, the slingshots' (none in 60 steps),
    # ungrokking's and the race's
    for name, fig in plot(experiment).items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        assert buffer.tell() > 5_000, name
        assert _ink(fig) > 0.02, f"{name} is (nearly) blank"


@pytest.mark.parametrize(("builtin", "figures"), [("liu-toy", TOY_FIGURES), ("varma-ungrokking", SIZE_FIGURES),
                                                  ("grokking-race", RACE_FIGURES)])  # fmt: skip
def test_the_figures_of_one_kind_of_experiment_are_drawn(builtin: str, figures: list[str], tmp_path: Path) -> None:
    result = groklab.run(builtin, out=tmp_path / builtin, progress=False, quick=True)
    assert set(figures) <= set(applicable(result))
    for name, fig in plot(result, figures).items():
        assert _ink(fig) > 0.02, f"{name} is (nearly) blank"


def test_figures_without_data_say_so(tmp_path: Path) -> None:
    result = groklab.run({**SPEC, "sweep": {}, "measures": {"names": "none"}}, out=tmp_path / "bare", progress=False)
    assert applicable(result) == ["curves", "measures", "neurons"]
    (fig,) = plot(result, ["tsne"]).values()
    assert "no representations stored" in fig.axes[0].texts[0].get_text()


def test_cli_plot_and_report(experiment: groklab.ExperimentResult, tmp_path: Path) -> None:
    def groklab_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "groklab", *args], capture_output=True, text=True, timeout=DEADLINE
        )

    result = groklab_cli("plot", str(experiment.root), "--what", "curves", "--what", "sweep", "--format", "svg")
    assert result.returncode == 0, result.stderr
    assert (experiment.root / "figures" / "sweep.svg").stat().st_size > 5_000
    bad = groklab_cli("plot", str(experiment.root), "--format", "gif")
    assert (
        bad.returncode == 2 and bad.stderr.strip() == "error: --format gif: not a figure format; allowed: png, svg, pdf"
    )
    coarse = groklab_cli("plot", str(experiment.root), "--dpi", "5")
    assert coarse.returncode == 2 and coarse.stderr.strip() == "error: --dpi 5: out of range; allowed: 20 to 1200"
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
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--window-size=1024,800",
    ]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    shown = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=DEADLINE
    )
    dom = shown.stdout
    assert 'data-ready="1"' in dom, shown.stderr[-2000:]  # the page's script ran to its end
    assert 'data-fits="1"' in dom  # no part of the page (the wide runs table) makes it scroll sideways
    assert dom.count("<img") == len(DRAWN) and dom.count("data:image/png;base64,") == len(DRAWN)
    assert dom.count("<td>run-") == len(experiment.runs)
    console = [line for line in shown.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console


# -- in a notebook: figures that leave pyplot alone, at the declared dpi; a short repr; the report's defects --


def test_figures_leave_pyplot_and_its_backend_alone(experiment: groklab.ExperimentResult) -> None:
    script = (
        "import matplotlib, matplotlib.pyplot as plt, groklab\nfrom matplotlib.figure import Figure\n"
        f"figures = groklab.load({str(experiment.root)!r}).plot(['curves', 'fourier'])\n"
        "print(matplotlib.get_backend(), plt.get_fignums(), sorted(figures), isinstance(figures['curves'], Figure))\n"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=DEADLINE,
                           env={**os.environ, "MPLBACKEND": "svg"})  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["svg", "[]", "['curves',", "'fourier']", "True"]


def test_saved_figures_have_the_declared_dpi(experiment: groklab.ExperimentResult, tmp_path: Path) -> None:
    (fig,) = plot(experiment, ["curves"]).values()
    width_inches = fig.get_figwidth()
    for dpi, folder in ((DPI, tmp_path / "default"), (80, tmp_path / "low")):
        (path,) = save_figures(experiment, ["curves"], out=folder, dpi=dpi)
        assert imread(path).shape[1] == round(width_inches * dpi)
    assert DPI == 150 and PAPER["savefig.dpi"] == DPI


def test_a_result_shows_itself_briefly(experiment: groklab.ExperimentResult) -> None:
    text = repr(experiment)
    assert len(text) < 200 and "modular-addition" in text and "4 of 4 runs finished" in text
    html_text = experiment._repr_html_()
    assert html_text.count("<td>run-") == 4 and "verdict" in html_text and "<h2>" not in html_text
    assert set(experiment.plot(["curves", "sweep"])) == {"curves", "sweep"}


def test_the_report_folds_the_spec_and_environment(page: Path) -> None:
    text = page.read_text()
    assert "<h2>Spec</h2><details><summary>" in text and "<h2>Environment</h2><details><summary>groklab " in text


def test_the_log_step_axis_is_linear_up_to_the_first_evaluation(experiment: groklab.ExperimentResult) -> None:
    (fig,) = plot(experiment, ["curves"]).values()
    first = SPEC["train"]["eval_every"]  # evaluations at 0, 5, 10, ...: linear from 0 to 5, log beyond
    assert {ax.xaxis.get_transform().linthresh for ax in fig.axes if ax.get_xscale() == "symlog"} == {first}


def test_the_measures_panels_show_only_measures_that_were_stored(tmp_path: Path) -> None:
    parity = {"task": {"name": "parity", "n_bits": 10, "k": 2, "n_train": 60, "n_test": 40},
              "model": {"width": 32}, "train": {"steps": 20, "eval_every": 5}}  # fmt: skip
    result = groklab.run(parity, out=tmp_path / "parity", progress=False)
    (fig,) = plot(result, ["measures"]).values()
    titles = [ax.get_title() for ax in fig.axes]
    assert "weight norm" in titles and "restricted / excluded loss" not in titles


def test_the_fourier_figure_of_an_mse_run_marks_its_top_frequencies(tmp_path: Path) -> None:
    spec = {**SPEC, "sweep": {}, "measures": {}}  # Gromov's MSE: no restricted/excluded measure by default
    result = groklab.run(spec, out=tmp_path / "mse", progress=False)
    assert "key_frequencies" not in result.series(result.rows[0]["run_id"])
    (fig,) = plot(result, ["fourier"]).values()
    red = [bar for bar in fig.axes[0].patches if to_hex(bar.get_facecolor()) == TEST]
    assert len(red) == result.run_config(result.rows[0]["run_id"]).measures.restricted_excluded.n_key_frequencies
    assert "top" in fig.axes[0].get_title()


def test_one_run_figures_show_the_run_that_trained_longest() -> None:
    rows = [{"run_id": "run-0000", "steps": 500}, {"run_id": "run-0001", "steps": 2000},
            {"run_id": "run-0002", "steps": 2000}]  # fmt: skip
    result = groklab.ExperimentResult(Path("."), {}, {}, rows)
    assert pick_run(result, None) == "run-0001" and pick_run(result, "run-0000") == "run-0000"
