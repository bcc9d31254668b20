"""Every experiment under a directory as one SQL database (DuckDB, the `query` extra): ask across experiments.

    experiments  one row per experiment: experiment (its directory, relative to the root), name, state, runs
    runs         one row per finished run: experiment, run_id, the columns of ExperimentResult.runs (status,
                 steps, memorized_step, generalized_step, final_*, events, and every param by its dotted key)
    metrics      a view over every run's metrics.parquet: experiment, run_id, step, losses, accuracies, measures
    events       one row per event of a run: experiment, run_id, event, step (memorized, generalized, and the
                 step-valued events of measures/curve_events.py)

Parameters are columns named by their dotted keys, so they are quoted in SQL:

    SELECT experiment, run_id FROM runs WHERE "optimizer.weight_decay" >= 1 AND generalized_step IS NULL

`groklab query` asks one question and changes nothing: one SELECT statement (no COPY, ATTACH, SET, PRAGMA or
CREATE), on a connection locked once its tables and views are built (DuckDB's enable_external_access off, reading
allowed only for the experiments' metrics files, extensions neither installed nor loaded, lock_configuration on).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from groklab.config import SpecError
from groklab.store.layout import METRICS_FILE, RUNS_DIR, SPEC_FILE
from groklab.store.reader import DamagedRunWarning, ExperimentResult, load

EVENT_STEPS = ("memorized_step", "generalized_step")
"""Columns of the runs table that are steps at which something happened, besides the curve events'."""


def experiments_under(root: Path) -> list[Path]:
    """Every experiment directory at or below root (a directory holding experiment.yaml), sorted."""
    return sorted(path.parent for path in root.rglob(SPEC_FILE) if (path.parent / RUNS_DIR).is_dir())


def catalog(root: str | Path = ".") -> Any:
    """A DuckDB connection (in memory) with the tables experiments, runs, events and the view metrics over every
    experiment under root. Raises SpecError when DuckDB is missing or root holds no experiment."""
    try:
        import duckdb
    except ImportError:
        raise SpecError("groklab query needs DuckDB; install it with: pip install 'groklab[query]'") from None
    root = Path(root)
    folders = experiments_under(root) if root.is_dir() else []
    if not folders:
        raise SpecError(f"{root}: no groklab experiment in it or below it")
    results = []
    for folder in folders:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DamagedRunWarning)  # a damaged run is left out, as summary does
                results.append((str(folder.relative_to(root)) or ".", load(folder)))
        except SpecError as error:  # a damaged experiment.yaml or meta.json: the others still answer
            warnings.warn(f"{error}; experiment left out of the query", DamagedRunWarning, stacklevel=2)
    if not results:
        raise SpecError(f"{root}: no readable groklab experiment in it or below it")
    connection = duckdb.connect()
    connection.register("experiments_frame", _experiments(results))
    connection.execute("CREATE TABLE experiments AS SELECT * FROM experiments_frame")
    runs = _runs(results)
    connection.register("runs_frame", runs)
    connection.execute("CREATE TABLE runs AS SELECT * FROM runs_frame")
    connection.register("events_frame", _events(runs))
    connection.execute("CREATE TABLE events AS SELECT * FROM events_frame")
    for frame in ("experiments_frame", "runs_frame", "events_frame"):
        connection.unregister(frame)
    # metrics stay in their Parquet files: a view, with each file's experiment and run from a table of the files
    files = pd.DataFrame(
        [
            {
                "filename": str(result.run_dir(row["run_id"]).resolve() / METRICS_FILE),
                "experiment": where,
                "run_id": row["run_id"],
            }
            for where, result in results
            for row in result.rows  # the runs that read whole (their metrics files checked): never a damaged one
        ],
        columns=["filename", "experiment", "run_id"],
    )
    connection.register("files_frame", files)
    connection.execute("CREATE TABLE metric_files AS SELECT * FROM files_frame")
    connection.unregister("files_frame")
    if len(files):
        listed = ", ".join("'" + name.replace("'", "''") + "'" for name in files["filename"])
        connection.execute(
            "CREATE VIEW metrics AS SELECT f.experiment, f.run_id, m.* EXCLUDE (filename) FROM "
            f"read_parquet([{listed}], filename = true, union_by_name = true) AS m "
            "JOIN metric_files AS f USING (filename)"
        )
    else:
        connection.execute("CREATE VIEW metrics AS SELECT experiment, run_id FROM metric_files")
    return connection


def lock(connection: Any, readable: list[str]) -> None:
    """Nothing outside the catalog from here on: no file written, none read but `readable` (the metrics files the
    view reads), no database attached, no extension installed or loaded, no setting changed back."""
    listed = ", ".join("'" + name.replace("'", "''") + "'" for name in readable)
    connection.execute(f"SET allowed_paths = [{listed}]")
    connection.execute("SET autoinstall_known_extensions = false")
    connection.execute("SET autoload_known_extensions = false")
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")


def query(sql: str, root: str | Path = ".") -> pd.DataFrame:
    """Answer one SELECT statement over the catalog of root, on a locked connection (see the module's docstring); the
    answer as a frame. Raises SpecError for bad SQL and for anything but one SELECT."""
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except Exception as error:  # a parser error
        raise SpecError(f"query: {str(error).strip().splitlines()[0]}") from None
    kinds = [statement.type.name for statement in statements]
    if kinds != ["SELECT"]:
        given = (
            "no statement" if not kinds else f"{len(kinds)} statements" if len(kinds) > 1 else f"{kinds[0]} statement"
        )
        raise SpecError(f"query: {given}; allowed: one SELECT statement (a query reads, it never writes)")
    connection = catalog(root)
    lock(connection, [str(name) for (name,) in connection.execute("SELECT filename FROM metric_files").fetchall()])
    try:
        return connection.execute(sql).df()
    except Exception as error:  # duckdb's errors (parser, binder, catalog) share no importable base class
        first = str(error).strip().splitlines()[0]
        raise SpecError(f"query: {first}; the tables are experiments, runs, metrics, events") from None


def _experiments(results: list[tuple[str, ExperimentResult]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "experiment": where,
                "name": result.spec.get("name"),
                "state": result.meta.get("state"),
                "runs": result.meta.get("n_runs"),
                "finished_runs": len(result.rows),
                "description": result.spec.get("description"),
            }
            for where, result in results
        ]
    )


def _runs(results: list[tuple[str, ExperimentResult]]) -> pd.DataFrame:
    frames = [result.runs.assign(experiment=where) for where, result in results if result.rows]
    if not frames:
        return pd.DataFrame(columns=["experiment", "run_id"])
    runs = pd.concat(frames, ignore_index=True)
    for column in runs.columns:  # lists and dicts (slingshot steps, phases) as text: DuckDB wants one type
        if runs[column].map(lambda v: isinstance(v, list | dict)).any():
            runs[column] = runs[column].map(lambda v: None if v is None else str(v))
    return runs[["experiment", *[c for c in runs.columns if c != "experiment"]]]


def _events(runs: pd.DataFrame) -> pd.DataFrame:
    """Long format: one row per (run, event) whose value is a step."""
    columns = [c for c in runs.columns if c in EVENT_STEPS or (c.endswith("_step") and c != "steps")]
    rows = []
    for _, run in runs.iterrows():
        for column in columns:
            value = run[column]
            if value is not None and not pd.isna(value):
                rows.append({"experiment": run["experiment"], "run_id": run["run_id"],
                             "event": column.removesuffix("_step"), "step": int(value)})  # fmt: skip
    return pd.DataFrame(rows, columns=["experiment", "run_id", "event", "step"])
