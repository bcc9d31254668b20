"""One self-contained HTML page per experiment (figures embedded, no CDN), and an index across experiments.

The page: what was run (spec, environment), the source's claims next to what was measured (built-in
experiments), the runs table (click a header to sort), the events, and every applicable figure.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from groklab.config import SpecError, builtin_specs, flatten, parse_experiment
from groklab.expectations import check
from groklab.figures import DPI, FIGURES, plot
from groklab.files import atomic_write
from groklab.plugins import load_plugins
from groklab.store.reader import ExperimentResult, load

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}
th{cursor:pointer;background:#f6f6f6;position:sticky;top:0} td:first-child,th:first-child{text-align:left}
.met{color:#1a7f37;font-weight:600} .unmet{color:#cf222e;font-weight:600} .na{color:#888}
figure{margin:1em 0} figcaption{color:#555;font-size:13px} img{max-width:100%}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}
.wide{overflow-x:auto;max-width:100%} summary{cursor:pointer;color:#555}
"""
SORT = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows), up = th.dataset.up !== '1';
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v ?? a.cells[col].textContent;
      var y = b.cells[col].dataset.v ?? b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return up ? c : -c;
    });
    th.dataset.up = up ? '1' : '0';
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
// the page fits its window: nothing (a wide runs table) makes the whole page scroll sideways
document.body.dataset.fits = document.documentElement.scrollWidth <= document.documentElement.clientWidth ? '1' : '0';
document.body.dataset.ready = '1';  // the page's script ran to the end (checked by the browser test)
"""
RUN_COLUMNS = ["run_id", "seed", "status", "steps", "memorized_step", "generalized_step", "grokking_delay"]
RUN_COLUMNS += ["test_loss_peak_step", "circuit_formation_step", "cleanup_step", "cleanup_end_step"]
RUN_COLUMNS += ["final_train_acc", "final_test_acc", "final_test_loss", "wall_time_s"]


def report(directory: str | Path) -> Path:
    """Write DIR/report.html for an experiment directory, or an index.html (and every report) for a
    directory of experiments. Returns the page written."""
    load_plugins()  # their checks and figures are on the page
    root = Path(directory)
    if (root / "experiment.yaml").is_file():
        return _experiment_page(load(root))
    children = sorted(p for p in root.iterdir() if (p / "experiment.yaml").is_file()) if root.is_dir() else []
    if not children:
        raise SpecError(f"{root}: not a groklab experiment directory, nor a directory of them")
    pages = [_experiment_page(load(child)) for child in children]
    return _index_page(root, [load(child) for child in children], pages)


def _experiment_page(result: ExperimentResult) -> Path:
    spec, meta = result.spec, result.meta
    parts = [f"<h1>{_e(spec.get('name', 'experiment'))}</h1>"]
    parts.append(f"<p class='sub'>{_e(spec.get('description', ''))}</p>")
    finished = f"{len(result.rows)} of {meta.get('n_runs', '?')} runs finished"
    if result.progress:  # running, interrupted or failed: their partial curves are in the figures, dotted
        counts = Counter(row["status"] for row in result.progress)
        finished += "".join(f", {n} {status}" for status, n in sorted(counts.items())) + " (partial results)"
    wall = meta.get("wall_time_s")
    parts.append(f"<p>{finished}; state {_e(meta.get('state', '?'))}; wall time {_duration(wall)}; "
                 f"device {_e(meta.get('device', '?'))}.</p>")  # fmt: skip
    if command := meta.get("command"):  # every --set, --sweep, --quick, --device that made it
        parts.append(f"<p>Made by <code>{_e(command)}</code></p>")
    for path, digest in (meta.get("data_files") or {}).items():  # task arrays: the files it was trained on
        parts.append(f"<p>Data: <code>{_e(path)}</code> (SHA-256 <code>{_e(digest)}</code>)</p>")
    for made in meta.get("code") or []:  # the code a spec named (a module, a data function, an optimizer class)
        source = f"<code>{_e(made.get('file'))}</code> (SHA-256 <code>{_e(made.get('sha256'))}</code>)"
        where = source if made.get("file") else "no source file (defined in a notebook or a session)"
        parts.append(f"<p>Code: <code>{_e(made.get('factory'))}</code> from {where}</p>")
    parts += _expectations(result)
    parts.append("<h2>Runs</h2><div class='wide'>" + _runs_table(result) + _unfinished_table(result) + "</div>")
    parts.append("<h2>Figures</h2>")
    for name, fig in plot(result).items():
        kind = FIGURES[name]
        caption = kind.summary + (f" (from {kind.package})" if kind.package != "groklab" else "")
        parts.append(f"<figure id='fig-{name}'><img alt='{name}' src='data:image/png;base64,{_png(fig)}'>"
                     f"<figcaption><b>{name}</b>: {_e(caption)}</figcaption></figure>")  # fmt: skip
    spec_text = yaml.safe_dump(spec, sort_keys=False)
    parts.append(f"<h2>Spec</h2><details><summary>{len(spec_text.splitlines())} lines of YAML</summary><pre>"
                 + _e(spec_text) + "</pre></details>")  # fmt: skip
    environment = json.dumps(meta, indent=1)
    parts.append(f"<h2>Environment</h2><details><summary>{_e(_environment_summary(meta))}</summary><pre>"
                 + _e(environment) + "</pre></details>")  # fmt: skip
    return _write(result.root / "report.html", spec.get("name", "experiment"), "\n".join(parts))


NOTEBOOK_ROWS = 20
"""Runs a notebook's summary lists before it says how many more there are."""


def summary_html(result: ExperimentResult) -> str:
    """What a result shows in Jupyter (ExperimentResult._repr_html_): its name, the runs (the first NOTEBOOK_ROWS)
    and the claims with their verdicts; the figures are a call away (result.plot())."""
    name = _e(str(result.spec.get("name", "experiment")))
    parts = [f"<b>{name}</b>: {_e(str(result.spec.get('description', '')))}<br>"]
    parts.append(f"{len(result.rows)} of {result.meta.get('n_runs', '?')} runs finished, in {_e(str(result.root))}")
    shown = ExperimentResult(result.root, result.spec, result.meta, result.rows[:NOTEBOOK_ROWS], result.progress)
    parts.append(_runs_table(shown) + _unfinished_table(shown))
    if len(result.rows) > NOTEBOOK_ROWS:
        parts.append(f"<p>... and {len(result.rows) - NOTEBOOK_ROWS} more runs (result.runs has them all)</p>")
    return "\n".join(parts + _expectations(result)[1:])  # the claims table, without the page's heading


def _expectations(result: ExperimentResult) -> list[str]:
    checks = check(result)
    if not checks:
        return []
    rows = []
    for v in checks:
        verdict = {True: "<span class='met'>met</span>", False: "<span class='unmet'>not met</span>"}
        rows.append(f"<tr><td>{_e(v.claim)}</td><td>{_e(v.source)}</td><td>{_e(v.measured)}</td>"
                    f"<td>{'<span class=na>n/a</span>' if v.met is None else verdict[v.met]}</td></tr>")  # fmt: skip
    changed = _changed_from_builtin(result)
    note = f"<p>This experiment changes the built-in settings: {_e(', '.join(changed))}.</p>" if changed else ""
    if spec_notes := str(result.spec.get("notes", "")).strip():
        note = f"<p class='notes'><b>Departures from the source.</b> {_e(spec_notes)}</p>" + note
    head = "<tr><th>claim</th><th>source</th><th>measured</th><th>verdict</th></tr>"
    return ["<h2>The source's claims</h2>", note, f"<table class='sortable'><thead>{head}</thead><tbody>"
            + "".join(rows) + "</tbody></table>"]  # fmt: skip


def _changed_from_builtin(result: ExperimentResult) -> list[str]:
    path = builtin_specs().get(str(result.spec.get("name")))
    if path is None:
        return []
    builtin = flatten(parse_experiment(yaml.safe_load(path.read_text())).model_dump(mode="json"))
    stored = flatten(parse_experiment(result.spec).model_dump(mode="json"))
    return [f"{k}={stored.get(k)!r}" for k in sorted(set(builtin) | set(stored)) if builtin.get(k) != stored.get(k)]


def _unfinished_table(result: ExperimentResult) -> str:
    """The runs that started but have not finished: status, last saved step, latest accuracies, error."""
    if not result.progress:
        return ""
    head = "".join(f"<th>{c}</th>" for c in ("run_id", "status", "steps", "train_acc", "test_acc", "error"))
    body = []
    for row in sorted(result.progress, key=lambda r: r["run_id"]):
        final = row.get("final") or {}
        values = [row["run_id"], row["status"], row.get("steps"), final.get("train_acc"), final.get("test_acc")]
        body.append("<tr>" + "".join(_cell(v) for v in values) + f"<td>{_e(row.get('error', ''))}</td></tr>")
    return f"<h3>Unfinished runs</h3><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _runs_table(result: ExperimentResult) -> str:
    runs = result.runs
    if runs.empty:
        return "<p>No finished runs.</p>"
    swept = result.varied_keys
    columns = [c for c in RUN_COLUMNS[:2] + swept + RUN_COLUMNS[2:] if c in runs]
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for _, row in runs.iterrows():
        cells = "".join(_cell(row[c]) for c in columns)
        body.append(f"<tr>{cells}</tr>")
    return f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value) or str(value) == "<NA>":
        return "<td data-v=''>-</td>"
    if isinstance(value, float):
        return f"<td data-v='{value!r}'>{value:.4g}</td>"
    return f"<td>{_e(str(value))}</td>"


def _index_page(root: Path, results: list[ExperimentResult], pages: list[Path]) -> Path:
    rows = []
    for result, page in zip(results, pages):
        checks = check(result)
        met = sum(1 for v in checks if v.met)
        verdict = f"{met} of {len(checks)} claims met" if checks else "-"
        rows.append(f"<tr><td><a href='{_e(str(page.relative_to(root)))}'>{_e(result.spec.get('name', ''))}</a></td>"
                    f"<td>{len(result.rows)}</td><td>{_e(result.meta.get('state', '?'))}</td><td>{verdict}</td>"
                    f"<td>{_e(result.spec.get('description', ''))}</td></tr>")  # fmt: skip
    head = "<tr><th>experiment</th><th>runs</th><th>state</th><th>claims</th><th>description</th></tr>"
    table = f"<table class='sortable'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
    return _write(root / "index.html", f"experiments in {root.name}", f"<h1>Experiments in {_e(str(root))}</h1>{table}")


def _write(path: Path, title: str, body: str) -> Path:
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}<script>{SORT}</script></body></html>")  # fmt: skip
    atomic_write(path, lambda temporary: temporary.write_text(page))  # whole or absent, never through a link
    return path


def _environment_summary(meta: dict[str, Any]) -> str:
    """One line: the versions and the machine, the rest behind the click."""
    named = ", ".join(f"{k} {meta[k]}" for k in ("groklab", "torch", "python") if meta.get(k))
    return "; ".join(part for part in (named, meta.get("device_name") or meta.get("device")) if part)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return base64.b64encode(buffer.getvalue()).decode()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
