"""The layout of an experiment directory: every name in it, in one place.

    DIR/experiment.yaml          the resolved spec (every default filled in)
    DIR/meta.json                versions, git revision, device, plan, timings, state, the command that made it
    DIR/runs/<run_id>/metrics.parquet   step, train/test loss and accuracy, weight norm, ...
    DIR/runs/<run_id>/weights.safetensors   final state_dict (no run axis; weights.pt in older stores)
    DIR/runs/<run_id>/weights/step-N.safetensors  the state_dict at each of measures.snapshot_steps
    DIR/runs/<run_id>/data.npz          the run's split / sample, labels and corrupted mask
    DIR/runs/<run_id>/measures.npz      vector measures over evaluations (name, name.steps) and final arrays
    DIR/runs/<run_id>/result.json       the summary row, written last: a run exists iff this file does
    DIR/runs/<run_id>/progress.json     an unfinished run: its row so far (running, interrupted, failed)
    DIR/runs/<run_id>/progress.parquet  ... and its curve so far (both removed when the run finishes)
    DIR/checkpoints/<run_id>.pt         a stack's checkpoint, named after its first run (checkpoints.py)
    DIR/leases/<run_id>.<generation>    which live process trains a run (leases.py)
    DIR/leases/<host>-<pid>.process     which live processes work on the experiment (leases.py)
    DIR/sessions/<host>-<pid>.json      what each process that worked on the experiment trained
    DIR/logs/, DIR/figures/, DIR/recomputed/   trackers' files, `groklab plot`, `groklab measures --recompute`

Each file is written to a temporary name and renamed, so a crash or Ctrl-C never leaves a
half-written run: every run whose result.json exists is complete.
"""

from pathlib import Path

from groklab.errors import SpecError

SPEC_FILE, META_FILE, RUNS_DIR, RESULT_FILE = "experiment.yaml", "meta.json", "runs", "result.json"
METRICS_FILE, DATA_FILE, MEASURES_FILE = "metrics.parquet", "data.npz", "measures.npz"
PROGRESS_FILE, PROGRESS_METRICS = "progress.json", "progress.parquet"
WEIGHTS_FILE, WEIGHTS_DIR = "weights.safetensors", "weights"  # final weights; weights at snapshot_steps
LEGACY_WEIGHTS_FILE = "weights.pt"  # what stores before safetensors hold (read, never written)
CHECKPOINT_DIR, LEASE_DIR, SESSIONS_DIR = "checkpoints", "leases", "sessions"
PRESENCE = ".process"  # DIR/leases/<host>-<pid>.process: a live process working on the experiment
LOGS_DIR, FIGURES_DIR, RECOMPUTED_DIR = "logs", "figures", "recomputed"  # trackers; groklab plot; --recompute


def snapshot_name(step: int) -> str:
    """The file of a run's weights at one step, in DIR/runs/ID/weights/ (names sort by step)."""
    return f"step-{step:09d}.safetensors"


def directory(root: Path, *parts: str) -> Path:
    """DIR/PART/..., each level made if missing: SpecError if DIR or any level is a symbolic link, since a write
    through it would land wherever it points (groklab writes only inside --out)."""
    path = root
    for part in ("", *parts):
        path = path / part if part else path
        if path.is_symlink():
            raise SpecError(f"{path}: is a symbolic link; groklab writes only inside --out")
        path.mkdir(exist_ok=True)
    return path


def links(root: Path) -> list[Path]:
    """The symbolic links among DIR and the directories groklab writes into under it (checked before a command
    writes anything: a link would take its writes wherever it points)."""
    fixed = [RUNS_DIR, CHECKPOINT_DIR, LEASE_DIR, SESSIONS_DIR, LOGS_DIR, FIGURES_DIR, RECOMPUTED_DIR]
    runs = [*root.glob(f"{RUNS_DIR}/*"), *root.glob(f"{RUNS_DIR}/*/{WEIGHTS_DIR}")]
    return [path for path in (root, *(root / name for name in fixed), *runs) if path.is_symlink()]
