"""The `groklab` command: run, summary, plot, report, measures, query, list, spec.

It answers at once: each command imports what it needs when it runs (torch, pandas and the engine take
seconds to import), so `groklab --version`, `--help`, `list`, `spec` and `measures` import none of them
(tests/integration/test_cli.py checks that torch stays out)."""

from __future__ import annotations

import json
import math
import shlex
import sys
import warnings
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from groklab.errors import SpecError, show_warning, visible

if TYPE_CHECKING:
    from groklab.store import ExperimentResult

app = typer.Typer(
    help="groklab: train, measure and compare grokking experiments.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help is printed as written: rich markup would eat "pip install 'groklab[dask]'"
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"groklab {metadata.version('groklab')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """groklab: train, measure and compare grokking experiments."""


def _load(directory: Path) -> ExperimentResult:
    """A stored experiment; each damaged run it skipped is one warning line on stderr."""
    from groklab.store import load
    from groklab.store.reader import DamagedRunWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedRunWarning)
        result = load(directory)
    _echo_warnings(caught)
    return result


def _echo_warnings(caught: list[warnings.WarningMessage]) -> None:
    for warning in caught:
        typer.echo(f"warning: {visible(str(warning.message))}", err=True)


def _fail(message: str) -> None:
    typer.echo(f"error: {visible(message)}", err=True)
    raise typer.Exit(2)


def _cannot_write(error: OSError) -> None:
    """A command that writes into an experiment directory it may not write to (a read-only mount, no space)."""
    where = f"{error.filename}: " if error.filename else ""
    _fail(f"{where}cannot write there ({error.strerror or error})")


@app.command()
def run(
    spec: Annotated[str, typer.Argument(metavar="SPEC", help="YAML spec path or built-in experiment name.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override a key: KEY=VALUE (repeatable).")
    ] = None,
    sweep: Annotated[
        list[str] | None,
        typer.Option("--sweep", metavar="KEY=V1,V2,...", help="Sweep a key: KEY=V1,V2,... (repeatable; grid)."),
    ] = None,
    out: Annotated[
        str | None, typer.Option("--out", metavar="DIR", help="Experiment directory (default runs/NAME-TIME).")
    ] = None,
    device: Annotated[str, typer.Option("--device", metavar="DEVICE", help="cpu, cuda or cuda:N.")] = "cpu",
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, metavar="N", help="Worker processes (default: planned).")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            metavar="N",
            help="At most N torch threads in all (default: the cores it may use: affinity, cgroup quota, "
            "OMP_NUM_THREADS, SLURM_CPUS_PER_TASK). On a machine others keep busy, 1 (docs/cluster.md).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar and no table.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="The spec's quick variant (smaller grid/budget).")] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", metavar="ADDRESS", help="Train on a Dask cluster: tcp://HOST:PORT (docs/cluster.md)."
        ),
    ] = None,
    log: Annotated[
        list[str] | None,
        typer.Option(
            "--log",
            metavar="TRACKER",
            help="Log every evaluation to tensorboard, wandb or mlflow (repeatable; spec key log; each an extra: "
            "pip install 'groklab[tensorboard]').",
        ),
    ] = None,
) -> None:
    """Train every run of SPEC (a YAML file or a built-in name, see `groklab list`) and store it.

    KEY is a dotted spec key (every key: `groklab spec`); VALUE parses as YAML (0.01, true, [0.9, 0.98]).
    Re-running the same spec with the same --out resumes it.
    """
    from groklab.config import resolve_spec

    sets = [*(set_ or []), *([f"log=[{','.join(log)}]"] if log else [])]
    try:  # the spec alone first, before the engine is imported (torch takes seconds): a bad key or size at once
        resolve_spec(spec, sets or None, sweep, quick)
    except SpecError as error:
        _fail(str(error))
    from groklab.engine.interrupt import Terminated
    from groklab.runner import run as run_experiment

    try:
        result = run_experiment(
            spec,
            out=out,
            device=device,
            sets=sets or None,
            sweeps=sweep,
            progress=not quiet,
            workers=workers,
            threads=threads,
            quick=quick,
            command=shlex.join(["groklab", *sys.argv[1:]]),
            scheduler=scheduler,
        )
    except SpecError as error:
        _fail(str(error))
    except Terminated:  # SIGTERM (SLURM, timeout, docker stop): as Ctrl-C, with the signal's exit status
        typer.echo("terminated: every finished run is saved; run the same command with --out to resume", err=True)
        raise typer.Exit(143) from None
    except KeyboardInterrupt:
        typer.echo("\ninterrupted: every finished run is saved; run the same command with --out to resume", err=True)
        raise typer.Exit(130) from None
    except OSError as error:  # disk full, a directory removed under us: what was finished is on disk
        where = f" ({error.filename})" if error.filename else ""
        typer.echo(f"error: {error.strerror or error}{where}; every finished run is saved: fix it and run the "
                   "same command to resume", err=True)  # fmt: skip
        raise typer.Exit(1) from None
    if not quiet:
        typer.echo(format_table(result))
        typer.echo(f"saved to {result.root}")
    untrained = result.meta.get("untrained_runs") or []
    if untrained:  # a safety net: every run is trained or failed, or this says which were not
        typer.echo(f"error: {len(untrained)} run(s) not trained: {', '.join(untrained[:5])}; the same command "
                   "trains them", err=True)  # fmt: skip
        raise typer.Exit(1)
    failed = [row for row in result.progress if row["status"] == "failed"]
    if failed:  # the other runs finished; these raised (their errors are in `groklab summary`)
        typer.echo(f"error: {len(failed)} run(s) failed, first {failed[0]['run_id']}: {failed[0].get('error')}; "
                   "the same command retries them", err=True)  # fmt: skip
        raise typer.Exit(1)


@app.command()
def summary(
    directory: Annotated[Path, typer.Argument(help="An experiment directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array, one object per run.")] = False,
) -> None:
    """The per-run table of a finished (or interrupted) experiment."""
    try:
        result = _load(directory)
    except SpecError as error:
        _fail(str(error))
    if as_json:
        rows = sorted(result.rows + result.progress, key=lambda row: row["run_id"])
        typer.echo(json.dumps(finite(rows), indent=1, allow_nan=False))
    else:
        typer.echo(format_table(result))


@app.command()
def plot(
    directory: Annotated[Path, typer.Argument(help="An experiment directory.")],
    what: Annotated[list[str] | None, typer.Option("--what", help="A figure (repeatable); default: all.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="png, svg or pdf.")] = "png",
    dpi: Annotated[int, typer.Option("--dpi", help="Resolution of png figures, dots per inch.")] = 150,
) -> None:
    """Draw the experiment's figures into DIR/figures/: every kind it has data for (see docs/measures.md,
    figure table), or those named by --what."""
    from groklab.figures import save_figures

    try:
        paths = save_figures(_load(directory), what, fmt, dpi=dpi)
    except SpecError as error:
        _fail(str(error))
    except OSError as error:
        _cannot_write(error)
    for path in paths:
        typer.echo(str(path))


@app.command()
def report(
    directory: Annotated[Path, typer.Argument(help="An experiment directory, or a directory of them.")],
    open_: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
) -> None:
    """Write DIR/report.html (one self-contained page), or DIR/index.html for a directory of experiments."""
    from groklab.html_report import report as write_report
    from groklab.store.reader import DamagedRunWarning

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DamagedRunWarning)
            page = write_report(directory)
        _echo_warnings(caught)
    except SpecError as error:
        _fail(str(error))
    except OSError as error:
        _cannot_write(error)
    typer.echo(str(page))
    if open_:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())


@app.command(name="measures")
def list_measures(
    name: Annotated[
        str | None,
        typer.Argument(help="A measure: show its formula and source. With --recompute: an experiment directory."),
    ] = None,
    recompute: Annotated[
        str | None,
        typer.Option(
            "--recompute",
            help="Compute this measure from the weights the experiment stored over training "
            "(measures.snapshot_steps), into DIR/recomputed/NAME.parquet, and print it.",
        ),
    ] = None,
) -> None:
    """The progress measures, one line each (select them with --set measures.names=[...]); with DIR --recompute
    NAME, a measure computed later from the stored snapshots, without retraining."""
    if recompute is not None:
        from groklab.store.recompute import recompute as compute

        if name is None:
            _fail("--recompute needs the experiment directory: groklab measures DIR --recompute NAME")
        try:
            frame = compute(_load(Path(str(name))), recompute)
        except SpecError as error:
            _fail(str(error))
        except OSError as error:
            _cannot_write(error)
        typer.echo(frame.to_string(index=False))
        return
    listing = measure_listing()
    if name is not None:
        if name not in listing:
            _fail(f"measures {name}: unknown measure; allowed: {', '.join(sorted(listing))}")
        m = listing[name]
        typer.echo(f"{name}: {m['summary']}\nwhen: {m['when']}\nformula: {m['formula']}")
        typer.echo(f"source: {m['source']}\napplies to: {m['applies']}\npackage: {m['package']}")
        return
    for name, m in sorted(listing.items()):
        origin = f" [{m['package']}]" if m["package"] != "groklab" else ""
        typer.echo(f"{name:<20} {m['when']:<15} {m['default']:<8} {m['summary']}{origin}")


def measure_listing() -> dict[str, dict[str, str]]:
    """The measure registry as `groklab measures` shows it, read from measures/listing.json: importing the measures
    would import torch (seconds) to print a table. tests/unit/test_measures.py keeps the file equal to the
    registry (groklab.measures.registry.listing). Where plugins are installed, the registry with their measures."""
    from importlib import metadata, resources

    from groklab.plugins import GROUP, load_plugins

    if metadata.entry_points(group=GROUP):  # plugins add measures: the registry itself, with them
        from groklab.measures.registry import listing

        load_plugins()
        return listing()
    return json.loads((resources.files("groklab") / "measures" / "listing.json").read_text())


@app.command(name="query")
def query_experiments(
    sql: Annotated[str, typer.Argument(help="One SQL statement over the tables experiments, runs, metrics, events.")],
    root: Annotated[Path, typer.Argument(help="A directory: every experiment in it or below it.")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="The answer as JSON records.")] = False,
) -> None:
    """Ask across every experiment under ROOT in SQL (DuckDB: pip install 'groklab[query]'), e.g.
    groklab query 'SELECT experiment, run_id FROM runs WHERE "optimizer.weight_decay" >= 1 AND generalized_step IS
    NULL' runs/"""
    from groklab.store.catalog import query

    try:
        answer = query(sql, root)
    except SpecError as error:
        _fail(str(error))
    if as_json:
        typer.echo(answer.to_json(orient="records"))
    else:
        typer.echo(answer.to_string(index=False) if len(answer) else "(no rows)")


@app.command(name="list")
def list_experiments() -> None:
    """The built-in experiments, one line each."""
    import yaml

    from groklab.experiments import builtin_specs

    for name, path in sorted(builtin_specs().items()):
        description = (yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}).get(
            "description", ""
        )
        typer.echo(f"{name:<22} {description}")


@app.command(name="spec")
def spec_reference(
    key: Annotated[
        str | None, typer.Argument(help="A key (optimizer.lr) or a section (optimizer); default: every key.")
    ] = None,
) -> None:
    """The spec's keys, one line each: type, default and what it means (docs/spec.md has them too)."""
    from groklab.config import field_reference

    lines = field_reference().splitlines()
    if key is not None:
        chosen = [line for line in lines if line.split(" ", 1)[0] == key or line.startswith(f"{key}.")]
        if not chosen:
            sections = sorted({line.split(" ", 1)[0].split(".")[0] for line in lines})
            _fail(f"spec {key}: no such key; the sections: {', '.join(sections)} (groklab spec SECTION lists one)")
        lines = chosen
    typer.echo("\n".join(lines))


def format_table(result: ExperimentResult) -> str:
    """Every run that has started as an aligned text table: swept keys, seed, status (running, interrupted and
    failed runs show their last saved step and latest accuracies), events, accuracies; then the counts."""
    swept = result.varied_keys
    header = ["run_id", *swept, "seed", "status", "steps", "memorized", "generalized", "train_acc", "test_acc"]
    lines = [header]
    rows = sorted(result.rows + result.progress, key=lambda row: row["run_id"])
    for row in rows:
        values: list[Any] = [row["run_id"], *(row["params"].get(k) for k in swept), row["seed"], row["status"]]
        values += [row["steps"], row.get("memorized_step"), row.get("generalized_step")]
        values += [_accuracy(row["final"].get("train_acc")), _accuracy(row["final"].get("test_acc"))]
        lines.append(["-" if v is None else str(v) for v in values])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in lines)
    total = result.meta.get("n_runs", len(rows))
    if len(result.rows) < total:
        counts = Counter(row["status"] for row in result.progress)
        states = "".join(f", {n} {status}" for status, n in sorted(counts.items()))
        text += f"\n({len(result.rows)} of {total} runs finished{states}, {total - len(rows)} not started)"
    for row in result.progress:
        if row["status"] == "failed":
            text += f"\n{row['run_id']} failed: {row.get('error', '?')}"
    return text


def _accuracy(value: Any) -> str | None:
    return f"{value:.3f}" if isinstance(value, int | float) and math.isfinite(value) else None


def finite(value: Any) -> Any:
    """Strict JSON: NaN and infinities (a diverged run's losses) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _is_usage_error(error: Exception) -> bool:
    """A click usage error (bad option, missing argument): click.ClickException, or the copy of it that newer typer
    versions vendor. Recognized by its interface, as neither class is importable under every typer >= 0.12."""
    return callable(getattr(error, "format_message", None)) and isinstance(getattr(error, "exit_code", None), int)


def main() -> None:
    """Entry point: usage errors and SpecErrors become one line on stderr and exit status 2; warnings one line each."""
    with warnings.catch_warnings():  # (restores Python's way of showing warnings afterwards, for callers in-process)
        warnings.showwarning = show_warning
        _main()


def _main() -> None:
    try:
        code = app(standalone_mode=False)
    except SpecError as error:  # pragma: no cover - commands catch their own
        typer.echo(f"error: {visible(str(error))}", err=True)
        sys.exit(2)
    except Exception as error:
        if not _is_usage_error(error):
            raise
        message = error.format_message()  # type: ignore[attr-defined]
        if not message:  # bare `groklab`: the help was shown, nothing went wrong
            sys.exit(0)
        ctx = getattr(error, "ctx", None)
        command = f" {ctx.info_name}" if ctx is not None and ctx.parent is not None else ""
        typer.echo(f"error: {visible(message)} (see: groklab{command} --help)", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
