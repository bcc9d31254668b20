"""A measure computed after training, from the weights each run stored at measures.snapshot_steps.

Each run is rebuilt as a stack of one (its data, model and initialization come back from its config and seed,
as in training), its parameters are set to the stored ones step by step, and the measure reads the same probe
it would have read during training. Scalars land in DIR/recomputed/NAME.parquet (run_id, step, columns) and
vectors in DIR/recomputed/NAME.npz (RUN_ID/COLUMN, RUN_ID/COLUMN.steps), next to nothing else: the
experiment's own files are not touched.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import torch

from groklab.config import SpecError
from groklab.engine.stack import Stack
from groklab.files import atomic_write
from groklab.measures import MEASURES, Measure
from groklab.plugins import load_plugins
from groklab.store.layout import RECOMPUTED_DIR, WEIGHTS_DIR, directory, snapshot_name
from groklab.store.reader import DamagedFile, DamagedRunWarning, ExperimentResult
from groklab.store.writer import save_npz, write_parquet


def recompute(result: ExperimentResult, name: str) -> pd.DataFrame:
    """Compute measure `name` at every stored snapshot of every finished run; store and return its scalars
    as a frame (run_id, step, one column each). Raises SpecError for an unknown measure, a measure computed
    once after training, or an experiment that stored no snapshots. A run whose stored files are damaged or do
    not fit its config (another width's weights) is left out with a one-line DamagedRunWarning."""
    load_plugins()  # their measures join MEASURES
    measure = MEASURES.get(name)
    per_step = sorted(n for n, m in MEASURES.items() if m.when in ("eval", "representation"))
    if measure is None or measure.when == "final":
        raise SpecError(f"--recompute {name}: not a measure taken over steps; allowed: {', '.join(per_step)}")
    runs = [row["run_id"] for row in result.rows if result.snapshot_steps(row["run_id"])]
    if not runs:
        raise SpecError(f"--recompute {name}: {result.root} stored no weights over training; rerun it with "
                        "--set measures.snapshot_steps=N (or a list of steps)")  # fmt: skip
    rows: list[dict[str, object]] = []
    vectors: dict[str, list[np.ndarray]] = {}
    for run_id in runs:
        try:
            config = result.run_config(run_id)
            if not measure.applies(config):
                raise SpecError(
                    f"--recompute {name}: does not apply to {run_id} ({config.task.name}, {config.model.name})"
                )
            stack = Stack([(run_id, config)])
            measured = [
                (step, _measure_at(result, stack, measure, run_id, step)) for step in result.snapshot_steps(run_id)
            ]
        except DamagedFile as error:  # a damaged or foreign file: the other runs are still computed
            warnings.warn(f"{error}; {run_id} skipped", DamagedRunWarning, 2)
            continue
        for step, values in measured:
            rows.append({"run_id": run_id, "step": step} | {k: float(v) for k, v in values.items() if v.ndim == 0})
            for key, value in values.items():
                if value.ndim > 0:
                    vectors.setdefault(f"{run_id}/{key}", []).append(value)
                    vectors.setdefault(f"{run_id}/{key}.steps", []).append(np.asarray(step))
    if not rows:
        raise SpecError(f"--recompute {name}: no run of {result.root} could be recomputed (see the warnings)")
    frame = pd.DataFrame(rows)
    folder = directory(result.root, RECOMPUTED_DIR)
    atomic_write(folder / f"{name}.parquet", functools.partial(write_parquet, frame))
    if vectors:
        stacked = {k: np.stack(v) for k, v in vectors.items()}
        atomic_write(folder / f"{name}.npz", lambda path: save_npz(path, stacked))
    return frame


def _measure_at(
    result: ExperimentResult, stack: Stack, measure: Measure, run_id: str, step: int
) -> dict[str, np.ndarray]:
    """The measure on the weights `run_id` stored at `step`, set into its stack of one."""
    stored = result.weights(run_id, step)
    path = result.run_dir(run_id) / WEIGHTS_DIR / snapshot_name(step)
    for name, param in [*stack.params.items(), *stack.runs.buffers.items()]:
        if name not in stored or stored[name].shape != param.shape[1:]:
            found = tuple(stored[name].shape) if name in stored else "nothing"
            raise DamagedFile(f"{path}: holds {found} as {name}, where this run's model has {tuple(param.shape[1:])}")
    stack.params = stack.model.layout({n: stored[n][None].to(stack.dtype) for n in stack.params})
    stack.runs.buffers = {n: stored[n][None] for n in stack.runs.buffers}
    with torch.no_grad():
        return {k: v.detach().cpu().numpy()[0] for k, v in measure.fn(stack.probe(step)).items()}
