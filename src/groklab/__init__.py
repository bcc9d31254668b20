"""groklab: a laboratory for grokking — delayed generalization on algorithmic tasks.

The public API (everything else is internal):

    run(spec, out=None, device="cpu", sets=None, sweeps=None, progress=True, scheduler=None) -> ExperimentResult
    load(dir) -> ExperimentResult            (.runs, .metrics: pandas frames; .weights/.data/.series(run_id);
                                              .progress, .partial_metrics: the unfinished runs so far)
    plot(result_or_dir, what=None) -> {name: matplotlib Figure};  save_figures(...);  report(dir) -> page
    MEASURES, MeasuresConfig, gromov_solution        (progress measures; Gromov's analytic solution)
    Experiment, RunConfig, ModularTask, PermutationTask, AdditionTask, ParityTask, ImageTask, TeacherTask,
    ArrayTask (a file, or arrays), FunctionTask (a function of the seed), MLPModel, TransformerModel,
    OptimizerConfig, TrainConfig                     (the spec)
    ModuleModel(factory=fn_or_"pkg.mod:fn", kwargs={})  (your own torch.nn.Module; docs/extending.md)
    measure, check, figure                           (decorators: your own measures, claims checks, figures)
    expand_runs(experiment) -> list[RunConfig]
    builtin_specs() -> {name: path}
    train_stack(runs, device, listener=None, resume=None) -> list[RunResult]   (the engine, for notebooks)
    Listener                                         (what train_stack tells: on_start, on_evaluation,
                                                      on_checkpoint, on_run_done, on_progress)
    Stack(runs, device)                              (one stack's model and parameters; stack.runs: its per-run
                                                      data, e.g. stack.runs.x_test, shaped (run, ...))
    make_data(task, seed) -> RunData; MLP, Transformer, Model   (tasks; models and their one interface:
                                                      forward(params, x, hooks=...), run_with_cache, hook_names)
    reference_model(model, params, run) -> nn.Module  (one run as a plain torch module: oracle and export)
    Claim, CHECKS                                    (claims of a spec and the checks that decide them)
    SpecError                                        (raised for every bad input, one line)
"""

from __future__ import annotations

import importlib
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names below are, for type checkers; at run time each is imported when first used
    from groklab.config import (
        AdditionTask,
        ArrayTask,
        Claim,
        Experiment,
        FunctionTask,
        ImageTask,
        MeasuresConfig,
        MLPModel,
        ModularTask,
        ModuleModel,
        OptimizerConfig,
        ParityTask,
        PermutationTask,
        RunConfig,
        SpecError,
        TeacherTask,
        TrainConfig,
        TransformerModel,
        builtin_specs,
        expand_runs,
    )
    from groklab.data import RunData, make_data
    from groklab.engine.listener import Listener
    from groklab.engine.loop import train_stack
    from groklab.engine.result import RunResult
    from groklab.engine.stack import Stack
    from groklab.expectations import CHECKS
    from groklab.expectations.base import check
    from groklab.figures.registry import figure
    from groklab.measures import MEASURES, gromov_solution
    from groklab.measures.registry import measure
    from groklab.models import MLP, Model, Transformer, reference_model
    from groklab.runner import run
    from groklab.runner.trackers import Evaluation
    from groklab.store import ExperimentResult, load

__version__ = metadata.version("groklab")

_HOMES = {
    "groklab.config": "AdditionTask ArrayTask Claim Experiment FunctionTask ImageTask MeasuresConfig MLPModel "
    "ModularTask ModuleModel OptimizerConfig ParityTask PermutationTask RunConfig SpecError TeacherTask TrainConfig "
    "TransformerModel builtin_specs expand_runs",
    "groklab.data": "RunData make_data",
    "groklab.engine.listener": "Listener",
    "groklab.engine.loop": "train_stack",
    "groklab.engine.result": "RunResult",
    "groklab.engine.stack": "Stack",
    "groklab.expectations": "CHECKS",
    "groklab.expectations.base": "check",
    "groklab.figures.registry": "figure",
    "groklab.measures": "MEASURES gromov_solution",
    "groklab.measures.registry": "measure",
    "groklab.models": "MLP Model Transformer reference_model",
    "groklab.runner": "run",
    "groklab.runner.trackers": "Evaluation",
    "groklab.store": "ExperimentResult load",
}
_HOME = {name: module for module, names in _HOMES.items() for name in names.split()}
"""Where each public name lives. `import groklab` imports none of them (torch, pandas and the engine take seconds
to import; `groklab --version` should not wait for them): a name is imported when first used (PEP 562)."""


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'groklab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value  # once: later uses are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


# Figures and reports import matplotlib (~1 s): only when asked for, not on `import groklab`.
def plot(result: Any, what: list[str] | None = None) -> dict[str, Any]:
    """{name: matplotlib Figure} of a stored experiment (an ExperimentResult or its directory)."""
    from groklab.figures import plot as draw

    return draw(result, what)


def save_figures(result: Any, what: list[str] | None = None, fmt: str = "png") -> list[Path]:
    """Write the figures to DIR/figures/NAME.FMT; returns the paths."""
    from groklab.figures import save_figures as save

    return save(result, what, fmt)


def catalog(root: str | Path = ".") -> Any:
    """Every experiment under root as a DuckDB database: tables experiments, runs, events; view metrics
    (groklab[query]; see groklab.store.catalog)."""
    from groklab.store.catalog import catalog as connect

    return connect(root)


def to_hooked_transformer(result: ExperimentResult, run_id: str, step: int | None = None) -> Any:
    """A transformer_lens.HookedTransformer holding a run's weights: its final ones, or those stored at `step`
    (measures.snapshot_steps). The `lens` extra (transformer-lens < 4); see groklab.models.lens."""
    from groklab.models.lens import to_hooked_transformer as convert

    model, _, _ = result.model(run_id)
    return convert(model, result.weights(run_id, step))


def report(directory: str | Path) -> Path:
    """Write DIR/report.html (or DIR/index.html for a directory of experiments); returns the page."""
    from groklab.html_report import report as write

    return write(directory)


__all__ = [
    "AdditionTask",
    "ArrayTask",
    "CHECKS",
    "MEASURES",
    "MLP",
    "Claim",
    "Evaluation",
    "Experiment",
    "ExperimentResult",
    "FunctionTask",
    "ImageTask",
    "Listener",
    "MLPModel",
    "MeasuresConfig",
    "Model",
    "ModularTask",
    "ModuleModel",
    "OptimizerConfig",
    "ParityTask",
    "PermutationTask",
    "RunConfig",
    "RunData",
    "RunResult",
    "SpecError",
    "Stack",
    "TeacherTask",
    "TrainConfig",
    "Transformer",
    "TransformerModel",
    "__version__",
    "builtin_specs",
    "catalog",
    "check",
    "expand_runs",
    "figure",
    "gromov_solution",
    "load",
    "make_data",
    "measure",
    "plot",
    "reference_model",
    "report",
    "run",
    "save_figures",
    "to_hooked_transformer",
    "train_stack",
]
