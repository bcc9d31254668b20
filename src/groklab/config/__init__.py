"""Experiment specs: what a user writes (YAML or Python), validated into typed configs.

base.py        strict settings, the Spec base class
tasks.py       ModularTask, PermutationTask, AdditionTask, ParityTask, ImageTask, TeacherTask, ArrayTask,
               FunctionTask
models.py      MLPModel, TransformerModel, ModuleModel, KernelModel
training.py    OptimizerConfig (GrokfastConfig), TrainConfig
measures.py    MeasuresConfig, snapshot_schedule
experiment.py  RunConfig, Experiment, sweep expansion, error messages, the field reference
overrides.py   YAML files and --set / --sweep overrides
specs.py       a spec by name (groklab.experiments) or path, with its quick variant and overrides
"""

from groklab.config.experiment import (
    Claim,
    Experiment,
    RunConfig,
    Runs,
    expand_runs,
    field_reference,
    flatten,
    format_validation_error,
    parse_experiment,
    run_params,
)
from groklab.config.measures import MeasuresConfig, snapshot_schedule
from groklab.config.models import KernelModel, MLPModel, ModuleModel, TransformerModel
from groklab.config.overrides import apply_overrides, load_yaml, parse_scalar, read_yaml, set_dotted
from groklab.config.specs import resolve_spec, upgrade
from groklab.config.tasks import (
    AdditionTask,
    ArrayTask,
    FunctionTask,
    ImageTask,
    ModularTask,
    ParityTask,
    PermutationTask,
    TeacherTask,
)
from groklab.config.training import GrokfastConfig, MuonConfig, OptimizerConfig, TrainConfig
from groklab.errors import SpecError
from groklab.experiments import builtin_specs

__all__ = [
    "AdditionTask",
    "Claim",
    "Experiment",
    "MLPModel",
    "KernelModel",
    "ModuleModel",
    "MeasuresConfig",
    "ModularTask",
    "GrokfastConfig",
    "MuonConfig",
    "OptimizerConfig",
    "ParityTask",
    "ImageTask",
    "TeacherTask",
    "ArrayTask",
    "FunctionTask",
    "PermutationTask",
    "RunConfig",
    "Runs",
    "SpecError",
    "TrainConfig",
    "TransformerModel",
    "apply_overrides",
    "snapshot_schedule",
    "builtin_specs",
    "expand_runs",
    "field_reference",
    "flatten",
    "format_validation_error",
    "load_yaml",
    "read_yaml",
    "parse_experiment",
    "parse_scalar",
    "resolve_spec",
    "run_params",
    "set_dotted",
    "upgrade",
]
