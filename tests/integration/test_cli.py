"""The CLI through a subprocess: run, summary --json, list, and every bad input (exit 2, one line)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from groklab import load

from .waiting import DEADLINE, wait_for

TINY_SPEC = {
    "name": "tiny",
    "task": {"name": "modular", "modulus": 23, "train_fraction": 0.5},
    "model": {"name": "mlp", "width": 64, "activation": "quadratic", "bias": False, "init": "gromov"},
    "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 5.0, "betas": [0.9, 0.98]},
    "train": {"steps": 60, "loss": "mse", "eval_every": 10},
    "seeds": 2,
}


def groklab(*args: str, cwd: Path | None = None, timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "groklab", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPEC))
    return path


def test_run_then_summary_json(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = groklab("run", str(spec_file), "--out", str(out), "--sweep", "optimizer.weight_decay=1,5", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = groklab("summary", str(out), "--json")
    rows = json.loads(summary.stdout)
    assert len(rows) == 4
    for row in rows:
        assert set(row) >= {
            "run_id",
            "seed",
            "params",
            "status",
            "steps",
            "memorized_step",
            "generalized_step",
            "final",
        }
        assert row["status"] == "completed" and row["steps"] == 60
        assert set(row["final"]) == {"train_acc", "test_acc", "train_loss", "test_loss"}
        assert row["params"]["task.modulus"] == 23
    assert sorted(r["params"]["optimizer.weight_decay"] for r in rows) == [1.0, 1.0, 5.0, 5.0]
    table = groklab("summary", str(out)).stdout
    assert "optimizer.weight_decay" in table and "run-0003" in table
    experiment = load(out)
    assert len(experiment.runs) == 4 and set(experiment.metrics["run_id"]) == set(experiment.runs["run_id"])
    assert experiment.meta["state"] == "finished" and experiment.meta["torch"]
    # The command that made it is kept, as typed, with its overrides (as Hydra keeps overrides.yaml).
    command = f"groklab run {spec_file} --out {out} --sweep optimizer.weight_decay=1,5 --quiet"
    assert experiment.meta["command"] == command
    assert experiment.meta["overrides"]["sweep"] == ["optimizer.weight_decay=1,5"]


def test_run_with_worker_processes(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = groklab("run", str(spec_file), "--out", str(out), "--workers", "2", "--set", "model.width=32")
    assert result.returncode == 0, result.stderr
    assert "run-0001" in result.stdout and "memorized" in result.stdout
    assert len(load(out).runs) == 2


def test_list_shows_builtins() -> None:
    result = groklab("list")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert "modular-addition" in names and "parity" in names


QUICK_COMMANDS = [["--version"], ["--help"], ["list"], ["measures"], ["measures", "neuron_ipr"], ["spec"],
                  ["spec", "optimizer"], ["run", "--help"]]  # fmt: skip


def _heavy_imports(*args: str) -> list[str]:
    """Which of torch, pandas and matplotlib `groklab ARGS` imported (it must succeed)."""
    probe = ("import sys, runpy; sys.argv = ['groklab', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('groklab', run_name='__main__')\n"
             "finally:\n    print('HEAVY', sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=DEADLINE)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout.rstrip().rsplit("HEAVY ", 1)[1])


def test_a_bad_spec_is_refused_before_the_engine_is_imported(spec_file: Path, tmp_path: Path) -> None:
    """A wrong key or an impossible size is said before torch is imported (seconds): at once."""
    probe = ("import sys, runpy; sys.argv = ['groklab', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('groklab', run_name='__main__')\n"
             "finally:\n    print('TORCH', 'torch' in sys.modules)")  # fmt: skip
    for bad in ("seeds=1000000000", "train.steps=9223372036854775807", "model.wdth=3"):
        args = ["run", str(spec_file), "--set", bad, "--out", str(tmp_path / "never")]
        result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=DEADLINE)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and "TORCH False" in result.stdout, bad
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("args", QUICK_COMMANDS, ids=" ".join)
def test_commands_that_print_a_listing_import_neither_torch_nor_pandas(args: list[str]) -> None:
    """They answer at once (~0.3 s here, against 2-5 s when they imported the package whole): nothing heavy is
    imported to print a line. Checked on the modules loaded, not on the clock (these machines are shared)."""
    assert _heavy_imports(*args) == []


def test_reading_a_store_imports_no_torch(spec_file: Path, tmp_path: Path) -> None:
    """summary and query read tables (pandas, DuckDB), never weights: no torch (0.8 s here, against 2.8 s)."""
    out = tmp_path / "exp"
    assert groklab("run", str(spec_file), "--out", str(out), "--quiet").returncode == 0
    assert _heavy_imports("summary", str(out)) == ["pandas"]
    assert _heavy_imports("query", "SELECT run_id FROM runs", str(out)) == ["pandas"]


def test_a_bad_environment_variable_is_one_line_before_anything_is_written(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    result = subprocess.run([sys.executable, "-m", "groklab", "run", str(spec_file), "--out", str(out)],
                            capture_output=True, text=True, timeout=DEADLINE, env={**os.environ, "GROKLAB_STALE_SECONDS": "soon"})  # fmt: skip
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.strip().splitlines() == [
        "error: GROKLAB_STALE_SECONDS=soon: not a number of seconds; allowed: a number > 0 (default 300)"
    ]


def test_run_help_shows_its_options_first_and_brackets_as_written() -> None:
    help_text = groklab("run", "--help").stdout
    assert len(help_text.splitlines()) < 60 and help_text.index("--set") < 40 * 80
    assert "groklab spec" in help_text  # the spec reference is one command away
    assert "pip install 'groklab[tensorboard]'" in " ".join(help_text.split())  # no markup eats the brackets
    spec = groklab("spec").stdout
    assert "optimizer.lr " in spec and "Extras: groklab[tensorboard], groklab[wandb]" in spec
    assert all(line.startswith("optimizer.") for line in groklab("spec", "optimizer").stdout.splitlines())
    assert groklab("spec", "optimizer.lr").stdout.startswith("optimizer.lr (default")
    bad = groklab("spec", "optimiser")
    assert bad.returncode == 2 and bad.stderr.startswith("error: spec optimiser: no such key; the sections: ")


BAD_INPUTS = [
    (["--set", "seeds=1000000000"], "seeds: 1,000,000,000 seeds = 1,000,000,000 runs; at most 100,000"),  # never built
    (["--set", "train.steps=9223372036854775807", "--set", "train.eval_every=log"], "train.steps: Input should be"),
    (["--log", "tensorboard", "--log", "tensorboard"], "log: tensorboard named twice; each tracker once"),
    (["--set", "notes=" + "[" * 5000 + "]" * 5000], "nested deeper than 100 levels"),
    (["--set", "task.modulos=97"], "task.modulos: unknown key"),
    (["--set", "model.width=wide"], "model.width"),
    (["--set", "optimizer.lr=0"], "optimizer.lr"),
    (["--set", "task.train_fraction=1.5"], "task.train_fraction"),
    (["--set", "task.operation=div", "--set", "task.modulus=21"], "task.modulus: 21 is not prime"),
    (["--set", "task.name=parity", "--set", "task.n_bits=3", "--set", "task.k=4"], None),
    (["--sweep", "optimizer.lr=0.1,-1"], "optimizer.lr"),
    (["--set", "nonsense"], "--set nonsense: expected KEY=VALUE"),
    (["--device", "tpu"], "--device tpu"),
    (["--set", "measures.names=[ipr, norms]"], "measures.names: unknown measure 'ipr'"),
    (["--set", "measures.names=[parity_clustering]"], "measures.names: parity_clustering does not apply"),
    (
        ["--set", "measures.restricted_excluded.key_frequencies=[3, 12]"],
        "measures.restricted_excluded.key_frequencies: [3, 12] must be 1..11",
    ),
    (["--set", "measures.names=most"], "measures.names"),
]


@pytest.mark.parametrize(("extra", "expected"), BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_nothing_written(
    spec_file: Path, tmp_path: Path, extra: list[str], expected: str | None
) -> None:
    out = tmp_path / "never"
    result = groklab("run", str(spec_file), "--out", str(out), *extra, timeout=DEADLINE)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    if expected:
        assert expected in lines[0]
    assert not out.exists()


def test_parity_k_larger_than_n_names_both_keys(tmp_path: Path) -> None:
    spec = {"task": {"name": "parity", "n_bits": 3, "k": 4}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = groklab("run", str(path), "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "task.k: 4 is larger than task.n_bits (3)" in result.stderr


def test_missing_and_malformed_yaml(tmp_path: Path) -> None:
    missing = groklab("run", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml: no such spec file" in missing.stderr
    unknown = groklab("run", "no-such-builtin")
    assert unknown.returncode == 2 and "no such spec file or built-in" in unknown.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: {modulus: 97\nmodel: [")
    malformed = groklab("run", str(bad), "--out", str(tmp_path / "x"))
    assert malformed.returncode == 2 and "malformed YAML" in malformed.stderr
    assert len(malformed.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_out_dir_holding_another_experiment_is_refused(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    assert groklab("run", str(spec_file), "--out", str(out), "--quiet", "--set", "train.steps=5").returncode == 0
    before = sorted(p.name for p in out.rglob("*"))
    other = groklab("run", str(spec_file), "--out", str(out), "--set", "train.steps=6")
    assert other.returncode == 2 and "already holds another experiment" in other.stderr
    assert sorted(p.name for p in out.rglob("*")) == before
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    refused = groklab("run", str(spec_file), "--out", str(stranger))
    assert refused.returncode == 2 and "not a groklab experiment" in refused.stderr


def test_summary_of_a_non_experiment(tmp_path: Path) -> None:
    result = groklab("summary", str(tmp_path))
    assert result.returncode == 2 and "not a groklab experiment directory" in result.stderr


def test_ctrl_c_keeps_finished_runs_and_resume_completes(tmp_path: Path) -> None:
    # Three short runs finish (and are written) while three long ones in the same stack still train.
    spec = {**TINY_SPEC, "seeds": 3, "sweep": {"train.steps": [20, 5000]}}
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "exp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "groklab", "run", str(path), "--out", str(out), "--quiet", "--workers", "1"]
    # A shell running this suite in the background hands its children SIGINT ignored (and Python then
    # installs no KeyboardInterrupt handler): give the child the default, as a terminal's Ctrl-C has it.
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(lambda: len(list(out.glob("runs/*/result.json"))) >= 3, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    partial = load(out)
    assert len(partial.runs) == 3 and partial.meta["state"] == "interrupted"
    assert set(partial.runs["train.steps"]) == {20} and all(partial.runs["status"] == "completed")
    assert len(partial.metrics) == 3 * 3  # steps 0, 10, 20 of each finished run
    first_written = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    resumed = groklab("run", str(path), "--out", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert len(load(out).runs) == 6 and load(out).meta["resumed_runs"] == 3
    # The experiment's time adds up its sessions, and it started when the first one did.
    assert load(out).meta["wall_time_s"] > partial.meta["wall_time_s"]
    assert load(out).meta["started"] == partial.meta["started"]
    assert first_written == {p: p.stat().st_mtime_ns for p in first_written}  # finished runs kept as they were


def test_usage_errors_are_one_line() -> None:
    for args in (["run", "x", "--workers", "0"], ["run", "--bogus"], ["summary"]):
        result = groklab(*args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_transformer_builtins_run_through_the_cli(tmp_path: Path) -> None:
    tiny = [
        "--set",
        "train.steps=4",
        "--set",
        "model.d_model=16",
        "--set",
        "model.d_mlp=32",
        "--set",
        "train.eval_every=2",
    ]
    for name, modulus in (("nanda-modadd", "task.modulus=11"), ("power-division", "task.modulus=7")):
        out = tmp_path / name
        result = groklab("run", name, "--out", str(out), "--quiet", "--set", modulus, *tiny)
        assert result.returncode == 0, result.stderr
        (row,) = json.loads(groklab("summary", str(out), "--json").stdout)
        assert row["status"] == "completed" and row["steps"] == 4 and row["params"]["model.name"] == "transformer"
    perm = groklab(
        "run",
        "power-division",
        "--out",
        str(tmp_path / "s5"),
        "--quiet",
        *tiny,
        "--set",
        "task={name: permutation, degree: 4}",
    )
    assert perm.returncode == 0, perm.stderr
    bad = groklab("run", "nanda-modadd", "--set", "model.n_heads=5", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "model.n_heads: 5 does not divide model.d_model (128)" in bad.stderr


def test_measures_are_listed_and_stored(tmp_path: Path) -> None:
    listing = groklab("measures")
    assert listing.returncode == 0
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert {"neuron_ipr", "restricted_excluded", "rqi", "analytic_comparison", "update_norm"} <= set(names)
    detail = groklab("measures", "neuron_ipr")
    assert "formula:" in detail.stdout and "Gromov" in detail.stdout
    unknown = groklab("measures", "nope")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: measures nope: unknown measure")
    # A Gromov MLP run (with label noise) and a nanda-modadd run store their measures.
    gromov = [
        "--set",
        "train.steps=40",
        "--set",
        "task.label_noise=0.1",
        "--set",
        "seeds=1",
        "--set",
        "measures.names=all",
    ]
    nanda = ["--set", "train.steps=6", "--set", "task.modulus=11", "--set", "model.d_model=16"]
    nanda += ["--set", "model.d_mlp=32", "--set", "train.eval_every=2", "--set", "measures.representations.steps=[4]"]
    for name, extra in (("modular-addition", gromov), ("nanda-modadd", nanda)):
        out = tmp_path / name
        result = groklab("run", name, "--out", str(out), "--quiet", *extra)
        assert result.returncode == 0, result.stderr
        (row,) = json.loads(groklab("summary", str(out), "--json").stdout)
        assert {"test_loss_peak_step", "grokking_delay", "loss_spike_steps", "circuit_formation_step"} <= set(
            row["events"]
        )
        experiment = load(out)
        columns = set(experiment.metrics.columns)
        assert {"restricted_loss", "excluded_loss", "neuron_ipr_mean", "embedding_gini", "update_norm"} <= columns
        series = experiment.series(row["run_id"])
        assert {"neuron_ipr", "logit_spectrum", "key_frequencies", "embedding_spectrum"} <= set(series)
        if name == "modular-addition":
            assert {"clean_acc", "corrupted_acc"} <= columns and "prune_test_acc" in series
            assert row["analysis"]["analytic_acc"] == 1.0
        else:
            assert series["representations"].shape == (1, 11 * 11 - 36, 16)
