"""The run store: one directory per experiment, one sub-directory per finished run.

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
    DIR/checkpoints/<run_id>.pt         a stack's checkpoint, named after its first run (engine/checkpoint.py)
    DIR/leases/<run_id>.<generation>    which live process trains a run (leases.py)
    DIR/sessions/<host>-<pid>.json      what each process that worked on the experiment trained

Each file is written to a temporary name and renamed, so a crash or Ctrl-C never leaves a
half-written run: every run whose result.json exists is complete.
"""

from groklab.store.reader import ExperimentResult, load
from groklab.store.writer import ExperimentStore

__all__ = ["ExperimentResult", "ExperimentStore", "load"]
