"""groklab: a laboratory for grokking — delayed generalization on algorithmic tasks.

The public API (everything else is internal):

    run(spec, out=None, device="cpu", sets=None, sweeps=None, progress=True) -> ExperimentResult
    load(dir) -> ExperimentResult            (.runs, .metrics: pandas frames; .weights(run_id); .data(run_id))
    Experiment, RunConfig, ModularTask, PermutationTask, ParityTask, MLPModel, TransformerModel,
    OptimizerConfig, TrainConfig                     (the spec)
    expand_runs(experiment) -> list[RunConfig]
    builtin_specs() -> {name: path}
    train_stack(runs, device) -> list[RunResult]   (the engine, for notebooks)
    make_data(task, seed) -> RunData; MLP, Transformer   (tasks and models; Transformer.run_with_cache)
    SpecError                                        (raised for every bad input, one line)
"""

__version__ = "0.1.0"

from groklab.config import (
    Experiment,
    MLPModel,
    ModularTask,
    OptimizerConfig,
    ParityTask,
    PermutationTask,
    RunConfig,
    SpecError,
    TrainConfig,
    TransformerModel,
    expand_runs,
)
from groklab.data import RunData, make_data
from groklab.engine.loop import RunResult, train_stack
from groklab.models import MLP, Transformer
from groklab.runner import builtin_specs, run
from groklab.store import ExperimentResult, load

__all__ = [
    "MLP",
    "Experiment",
    "ExperimentResult",
    "MLPModel",
    "ModularTask",
    "OptimizerConfig",
    "ParityTask",
    "PermutationTask",
    "RunConfig",
    "RunData",
    "RunResult",
    "SpecError",
    "TrainConfig",
    "Transformer",
    "TransformerModel",
    "__version__",
    "builtin_specs",
    "expand_runs",
    "load",
    "make_data",
    "run",
    "train_stack",
]
