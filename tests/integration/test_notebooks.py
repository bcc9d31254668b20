"""The example notebooks run top to bottom in a fresh kernel (nbclient), at their quick sizes, and show what they
say they show: figures as images, the results' HTML, no errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .waiting import DEADLINE

EXAMPLES = Path(__file__).parents[2] / "docs" / "examples"


@pytest.mark.parametrize("name", ["nanda-fourier", "phase-diagram", "your-own-model"])
def test_the_example_notebook_runs_and_shows_its_figures(name: str, tmp_path: Path) -> None:
    source = EXAMPLES / f"{name}.ipynb"
    shutil.copy(source, tmp_path / source.name)
    notebook = nbformat.read(tmp_path / source.name, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # stored clean
    NotebookClient(
        notebook, timeout=DEADLINE, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    tables = [out for out in outputs if "text/html" in out.get("data", {})]
    assert len(images) >= (1 if name == "phase-diagram" else 2)
    assert any("<td>run-" in out["data"]["text/html"] for out in tables)  # the result's runs table
    assert (tmp_path / "runs").is_dir()  # written where the notebook runs, nowhere else
    if name == "your-own-model":  # its own data, module, measure, claims and YAML spec, all where it runs
        printed = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
        assert "| memorization precedes generalization (checked: " in printed  # a verdict for each claim
        report = (tmp_path / "runs" / "your-own-model" / "report.html").read_text()
        assert "my_transformer:make" in report and "embedding_rank" in report
        assert (tmp_path / "runs" / "your-own-model-yaml" / "meta.json").is_file()
