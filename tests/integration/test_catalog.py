"""SQL across experiments (DuckDB): the catalog's tables hold what each experiment's files hold, and a question
across experiments gets the answer pandas gives on the same stores."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import groklab
from groklab.config import SpecError
from groklab.store.catalog import query

from .waiting import DEADLINE

SPEC = {
    "task": {"modulus": 23, "train_fraction": 0.5},
    "model": {"width": 64, "activation": "quadratic", "bias": False, "init": "gromov"},
    "optimizer": {"lr": 0.01},
    "train": {"steps": 150, "loss": "mse", "eval_every": 10},
    "measures": {"names": "none"},
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalog")
    groklab.run({**SPEC, "name": "decay", "sweep": {"optimizer.weight_decay": [0.0, 1.0, 5.0]}},
                out=root / "decay", progress=False)  # fmt: skip
    groklab.run({**SPEC, "name": "fraction", "sweep": {"task.train_fraction": [0.3, 0.6]},
                 "optimizer": {"lr": 0.01, "weight_decay": 2.0}}, out=root / "nested" / "fraction", progress=False)  # fmt: skip
    return root


def test_a_question_across_experiments_gets_the_answer_pandas_gives(root: Path) -> None:
    answer = query(
        'SELECT experiment, run_id FROM runs WHERE "optimizer.weight_decay" >= 1 AND generalized_step IS NULL '
        "ORDER BY experiment, run_id",
        root,
    )
    expected = []
    for where in ("decay", "nested/fraction"):
        runs = groklab.load(root / where).runs
        chosen = runs[(runs["optimizer.weight_decay"] >= 1) & runs["generalized_step"].isna()]
        expected += [(where, run_id) for run_id in chosen["run_id"]]
    assert list(answer.itertuples(index=False, name=None)) == sorted(expected)
    total = query("SELECT count(*) AS n FROM runs", root)["n"][0]
    assert total == 5 and 0 < len(expected) < total  # not vacuous: the condition keeps some runs and drops others


def test_the_tables_hold_what_the_files_hold(root: Path) -> None:
    experiments = query("SELECT experiment, name, finished_runs FROM experiments ORDER BY experiment", root)
    assert experiments.values.tolist() == [["decay", "decay", 3], ["nested/fraction", "fraction", 2]]
    counts = query("SELECT experiment, run_id, count(*) AS n, max(step) AS last FROM metrics GROUP BY ALL", root)
    for _, row in counts.iterrows():
        metrics = groklab.load(root / row["experiment"]).metrics
        steps = metrics[metrics["run_id"] == row["run_id"]]["step"]
        assert row["n"] == len(steps) and row["last"] == steps.max()
    memorized = query("SELECT experiment, run_id, step FROM events WHERE event = 'memorized'", root)
    for _, row in memorized.iterrows():
        runs = groklab.load(root / row["experiment"]).runs.set_index("run_id")
        assert row["step"] == runs.loc[row["run_id"], "memorized_step"]
    assert len(memorized) >= 1
    connection = groklab.catalog(root)
    frame = connection.execute("SELECT * FROM metrics WHERE experiment = 'decay' AND run_id = 'run-0001'").df()
    stored = pd.read_parquet(root / "decay" / "runs" / "run-0001" / "metrics.parquet")
    pd.testing.assert_series_equal(frame["test_acc"].reset_index(drop=True), stored["test_acc"], check_names=False)


def test_bad_queries_and_roots_are_one_line(root: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="^query: Parser Error"):
        query("SELEC 1", root)
    with pytest.raises(SpecError, match="no groklab experiment in it or below it"):
        query("SELECT 1", tmp_path)
    shown = subprocess.run([sys.executable, "-m", "groklab", "query", "SELECT * FROM nowhere", str(root)],
                           capture_output=True, text=True, timeout=DEADLINE)  # fmt: skip
    assert shown.returncode == 2 and len(shown.stderr.strip().splitlines()) == 1
    assert "the tables are experiments, runs, metrics, events" in shown.stderr
    listed = subprocess.run([sys.executable, "-m", "groklab", "query", "SELECT name FROM experiments", str(root),
                             "--json"], capture_output=True, text=True, timeout=DEADLINE)  # fmt: skip
    assert listed.returncode == 0 and listed.stdout.strip() == '[{"name":"decay"},{"name":"fraction"}]'


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        ("COPY (SELECT * FROM runs) TO '{victim}'", "COPY statement; allowed: one SELECT statement"),
        ("ATTACH '{outside}/other.db'", "ATTACH statement"),
        ("SELECT 1; SELECT 2", "2 statements"),
        ("", "no statement"),
        ("SET enable_external_access = true", "SET statement"),
        ("PRAGMA database_list", "PRAGMA statement"),
        ("CREATE TABLE t AS SELECT 1", "CREATE statement"),
        ("SELECT * FROM read_csv('{outside}/secret.csv')", "Permission Error"),
        ("SELECT * FROM read_json('{victim}')", "Permission Error"),  # inside the root, but not a metrics file
        ("COPY runs TO '{outside}/out.csv'", "COPY statement"),
    ],
    ids=["copy-over-a-result", "attach", "two-statements", "empty", "set", "pragma", "create", "read-outside",
         "read-a-result", "copy-outside"],
)  # fmt: skip
def test_a_query_reads_the_catalog_and_nothing_else(root: Path, tmp_path: Path, sql: str, refusal: str) -> None:
    victim = next(root.glob("*/runs/run-0000/result.json"))
    before = victim.read_bytes()
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SpecError, match=f"^query: .*{re.escape(refusal)}"):
        query(sql.format(victim=victim, outside=tmp_path), root)
    assert victim.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["secret.csv"]
    assert query("SELECT count(*) AS n FROM metrics", root)["n"][0] > 0  # the metrics view still reads its files


def test_a_damaged_experiment_or_run_is_left_out_with_a_warning(root: Path, tmp_path: Path) -> None:
    """One damaged file under the root no longer fails the whole query: its run, or its experiment, is left out."""
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    before = query("SELECT experiment, count(*) AS n FROM runs GROUP BY ALL ORDER BY experiment", copy)
    (copy / "decay" / "experiment.yaml").write_text("name: [unclosed")
    (copy / "nested" / "fraction" / "runs" / "run-0000" / "metrics.parquet").write_bytes(b"PAR1 damaged")
    with pytest.warns(UserWarning, match=r"decay/experiment.yaml: damaged.*; experiment left out of the query"):
        runs = query("SELECT experiment, run_id FROM runs ORDER BY run_id", copy)
    assert set(runs["experiment"]) == {"nested/fraction"} and "run-0000" not in set(runs["run_id"])
    fraction = before.set_index("experiment")["n"]["nested/fraction"]
    assert len(runs) == fraction - 1  # the damaged run alone is left out of runs and of the metrics view
    with pytest.warns(UserWarning):
        counted = query("SELECT count(DISTINCT run_id) AS n FROM metrics", copy)["n"][0]
    assert counted == fraction - 1
