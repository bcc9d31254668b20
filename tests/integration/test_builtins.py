"""Every built-in experiment with a quick variant runs, and its report states the source's claims."""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import groklab
from groklab.expectations import check

from .waiting import DEADLINE

QUICK = sorted(n for n, p in groklab.builtin_specs().items() if (yaml.safe_load(p.read_text()) or {}).get("quick"))


def test_the_seed_experiments_have_quick_variants() -> None:
    seeds = {"parity-blog", "parity-wd-switch", "parity-label-flip", "gromov-mlp", "mlp-exp1", "mlp-exp2", "mlp-exp3"}
    assert seeds | {"doshi-corruption", "doshi-dropout", "doshi-batchnorm"} <= set(QUICK)


@pytest.mark.parametrize("name", QUICK)
def test_quick_variant_runs_and_reports_the_claims(name: str, tmp_path: Path) -> None:
    result = groklab.run(name, out=tmp_path / name, progress=False, quick=True)
    assert len(result.runs) >= 1 and result.meta["state"] == "finished"
    verdicts = check(result)
    spec_claims = yaml.safe_load(groklab.builtin_specs()[name].read_text())["claims"]
    assert len(verdicts) == len(spec_claims) >= 1
    assert all(isinstance(v.measured, str) and v.measured for v in verdicts)
    page = groklab.report(result.root).read_text()
    assert "The source's claims" in page and all(html.escape(v.claim, quote=True) in page for v in verdicts)
    if notes := result.spec.get("notes"):  # where the built-in departs from its source, stated on the page
        assert html.escape(notes, quote=True) in page


def test_quick_without_a_quick_variant_is_one_line_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "groklab", "run", "nanda-modadd", "--quick", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "error: --quick: nanda-modadd has no quick variant (a `quick:` section of overrides)"
    )
    assert not (tmp_path / "x").exists()
