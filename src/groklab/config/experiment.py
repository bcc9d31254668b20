"""Experiment specs: what a user writes (YAML or Python), validated into typed configs.

An experiment is `name`, `task`, `model`, `optimizer`, `train`, `seeds` and an optional `sweep` grid.
Every combination of sweep values x every seed is one *run*; `expand_runs` resolves each run into a
complete `RunConfig`, and every resolved run is validated before anything is trained or written.

Every field carries a docstring: they are the reference (`groklab run --help`, docs/spec.md).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from groklab.config.base import STRICT, Spec
from groklab.config.measures import OPTIONS, MeasuresConfig
from groklab.config.models import KernelModel, MLPModel, ModuleModel, TransformerModel
from groklab.config.overrides import set_dotted
from groklab.config.tasks import (
    AdditionTask,
    ArrayTask,
    FunctionTask,
    ImageTask,
    ModularTask,
    ParityTask,
    PermutationTask,
    TeacherTask,
    VectorTask,
)
from groklab.config.training import GrokfastConfig, MuonConfig, OptimizerConfig, TrainConfig
from groklab.errors import SpecError

MAX_RUNS = 100_000
"""Runs in one experiment: beyond this, expanding and storing the grid alone takes minutes and gigabytes."""
MAX_EVALUATIONS = 1_000_000
"""Evaluations in one run's schedule (each stores a metrics row)."""

Task = Annotated[
    ModularTask | PermutationTask | AdditionTask | ParityTask | ImageTask | TeacherTask | ArrayTask | FunctionTask,
    Field(discriminator="name"),
]
Model = Annotated[MLPModel | TransformerModel | ModuleModel | KernelModel, Field(discriminator="name")]


def _default_names(data: Any) -> Any:
    """Let users omit task.name / model.name (modular, mlp) although they discriminate the unions."""
    if isinstance(data, dict):
        data = dict(data)
        for key, default in (("task", "modular"), ("model", "mlp")):
            if isinstance(data.get(key), dict) and "name" not in data[key]:
                data[key] = {"name": default, **data[key]}
    return data


class RunConfig(Spec):
    """One fully resolved run: what the engine trains."""

    model_config = STRICT
    _names = model_validator(mode="before")(_default_names)
    task: Task = Field(default_factory=ModularTask)
    """The data: task.name is modular, permutation, addition, parity, images, teacher, or your own: arrays (a file)
    or function (a factory)."""
    model: Model = Field(default_factory=MLPModel)
    """The network: model.name is mlp, transformer or module (your own torch.nn.Module)."""
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """The optimizer and its hyperparameters."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Budget, loss, evaluation schedule, dtype."""
    measures: MeasuresConfig = Field(default_factory=MeasuresConfig)
    """Progress measures computed and stored with the run."""
    seed: int = 0
    """Seed of this run: its data split/sample, label noise, init and batch order."""
    variant: str = ""
    """The experiment's variant this run belongs to (its name in `variants`); empty without variants."""

    @model_validator(mode="after")
    def _compatible(self) -> RunConfig:
        if isinstance(self.task, VectorTask):
            name = self.task.name
            if isinstance(self.model, TransformerModel):
                raise ValueError(f"model.name: {name} inputs are vectors, not token sequences; use mlp for {name}")
            if isinstance(self.model, MLPModel) and self.model.embedding != "one_hot":
                raise ValueError(f"model.embedding: {name} inputs are vectors; use one_hot (the default) for {name}")
        if getattr(self.task, "kept_fraction", None) is not None and self.train.batch_size is not None:
            raise ValueError(
                f"train.batch_size: {self.train.batch_size} with task.on_generalized; a training set that shrinks "
                "is trained full batch: allowed null"
            )
        if self.regression and self.train.loss != "mse":
            what = "the teacher's regression" if isinstance(self.task, TeacherTask) else "task.kind regression"
            raise ValueError(f"train.loss: {self.train.loss} for {what}; allowed: mse")
        if isinstance(self.model, KernelModel):  # a kernel machine regresses one-hot tokens on the whole training set
            if isinstance(self.task, VectorTask):
                raise ValueError(f"model.name: rfm reads one-hot tokens; {self.task.name} inputs are vectors")
            if self.train.batch_size is not None:
                raise ValueError(f"train.batch_size: {self.train.batch_size} with model rfm, which solves on the "
                                 "whole training set: allowed null")  # fmt: skip
            if self.train.loss != "mse":
                raise ValueError(f"train.loss: {self.train.loss} with model rfm, a regression to one-hot labels; "
                                 "allowed: mse")  # fmt: skip
        if isinstance(self.task, AdditionTask) and isinstance(self.model, TransformerModel):
            raise ValueError("model.name: the addition task's labels (2p - 1 sums) are not tokens; use mlp")
        if isinstance(self.model, MLPModel):
            if self.model.embedding == "summed" and self.model.sequence != "a b":
                raise ValueError('model.sequence: embedding summed adds the operands\' embeddings; allowed: "a b"')
            if self.model.readout == "templates" and self.train.loss != "mse":
                raise ValueError(f"train.loss: {self.train.loss} with model.readout templates; allowed: mse")
        steps, every = self.train.steps, self.train.eval_every
        for key, listed in (("representations.steps", self.measures.representations.steps),
                            ("snapshot_steps", self.measures.snapshot_steps)):  # fmt: skip
            outside = [s for s in listed if not 0 <= s <= steps] if isinstance(listed, list) else []
            if outside:
                raise ValueError(f"measures.{key}: {outside} are not steps in 0..train.steps ({steps})")
        if isinstance(self.measures.snapshot_steps, int) and not 0 <= self.measures.snapshot_steps <= 1000:
            count = self.measures.snapshot_steps
            raise ValueError(f"measures.snapshot_steps: {count}; allowed: a list of steps, or a count 0..1000")
        if isinstance(every, int) and steps // every + 1 > MAX_EVALUATIONS:
            raise ValueError(
                f"train.eval_every: {every} makes {steps // every + 1:,} evaluations of train.steps {steps:,}; at most "
                f"{MAX_EVALUATIONS:,} (raise train.eval_every, or use 'log')"
            )
        return self

    @property
    def regression(self) -> bool:
        """The task's targets are real numbers (one output, squared error): the teacher, or arrays of kind
        regression."""
        yours = isinstance(self.task, ArrayTask | FunctionTask) and self.task.kind == "regression"
        return yours or isinstance(self.task, TeacherTask)

    @property
    def loss_kind(self) -> str:
        """The loss the engine computes (losses.per_run_loss): train.loss, template_mse for mse with the
        templates readout (the distance to the true class's template, not to a one-hot vector), or regression for
        a real-valued target (the squared error of the one output)."""
        if self.regression:
            return "regression"
        templates = isinstance(self.model, MLPModel) and self.model.readout == "templates"
        return "template_mse" if templates else self.train.loss


class Claim(Spec):
    """One claim of a source about an experiment, and the check that decides whether a stored run meets it."""

    model_config = STRICT
    claim: str
    """What the source reports, in its words (the report adds the checked condition, made from `params`)."""
    source: str
    """Who reports it: paper or seed document, figure or section."""
    check: str
    """The check's name (`groklab run --help` and docs/claims.md list them with their parameters)."""
    params: dict[str, Any] = {}
    """The check's parameters (a column, a limit, a swept key, ...): each threshold is written once, here."""


class Experiment(Spec):
    """An experiment: a base run, seeds, a sweep grid and named variants. Each (variant, sweep point, seed) is one
    run."""

    model_config = STRICT
    _names = model_validator(mode="before")(_default_names)
    name: str = "experiment"
    """Name of the experiment (used for the default output directory)."""
    description: str = ""
    """One line saying what the experiment shows (shown by groklab list)."""
    notes: str = ""
    """Where and why the experiment departs from its source, with what was measured (shown in the report)."""
    task: Task = Field(default_factory=ModularTask)
    """The data (see task.* keys)."""
    model: Model = Field(default_factory=MLPModel)
    """The network (see model.* keys)."""
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """The optimizer (see optimizer.* keys)."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Training (see train.* keys)."""
    measures: MeasuresConfig = Field(default_factory=MeasuresConfig)
    """Progress measures (see measures.* keys and `groklab measures`)."""
    seeds: int | list[int] = 1
    """A count n (seeds 0..n-1) or an explicit list of seeds."""
    sweep: dict[str, list[Any]] = {}
    """Grid: dotted key -> list of values; every combination x every seed is one run."""
    variants: dict[str, dict[str, Any]] = {}
    """Named settings compared side by side: name -> {dotted key: value}, e.g. {baseline: {}, ema:
    {optimizer.grokfast.filter: ema}}. Every variant x every sweep point x every seed is one run; the runs
    table names each run's variant (column `variant`). A variant may not set a swept key."""
    claims: list[Claim] = []
    """What the sources report, checked against the stored runs in the report (a copy of a spec keeps them):
    a list of {claim, source, check, params}; see docs/claims.md for the checks."""
    log: list[Literal["tensorboard", "wandb", "mlflow"]] = []
    """Trackers that hear every evaluation of every run as it trains (`groklab run --log NAME`, repeatable): one
    tracker run per groklab run, with its params, metrics, scalar measures and milestones. tensorboard writes to
    DIR/logs/tensorboard/RUN_ID; wandb to the project named after the experiment (WANDB_MODE=offline keeps it
    in DIR/logs/wandb); mlflow to MLFLOW_TRACKING_URI, or else DIR/logs/mlflow.db. Extras: groklab[tensorboard],
    groklab[wandb], groklab[mlflow]."""
    quick: dict[str, Any] = {}
    """The spec's quick variant: dotted key -> value applied by `groklab run --quick` (a smaller grid or
    budget that runs in CI-sized time; `sweep.KEY` replaces one sweep axis)."""

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}", name) or ".." in name:
            raise ValueError(f"name: {name!r} must be a plain name (letters, digits, . _ + -; no path separators)")
        return name

    @field_validator("log")
    @classmethod
    def _log(cls, log: list[str]) -> list[str]:
        twice = sorted({name for name in log if log.count(name) > 1})
        if twice:
            raise ValueError(f"log: {', '.join(twice)} named twice; each tracker once")
        return log

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: int | list[int]) -> int | list[int]:
        if isinstance(seeds, int) and seeds < 1:
            raise ValueError(f"seeds: {seeds} must be a count >= 1 or a list of integers")
        if isinstance(seeds, list) and (not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0):
            raise ValueError(f"seeds: {seeds} must be a non-empty list of distinct integers >= 0")
        return seeds

    @field_validator("sweep")
    @classmethod
    def _sweep(cls, sweep: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in sweep.items():
            if key.split(".")[0] not in ("task", "model", "optimizer", "train"):
                raise ValueError(f"sweep.{key}: sweep keys are dotted paths under task, model, optimizer, train")
            if not values:
                raise ValueError(f"sweep.{key}: needs at least one value")
            canonical = [
                json.dumps(float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v) for v in values
            ]
            if len(set(canonical)) != len(canonical):
                raise ValueError(f"sweep.{key}: {values} repeats a value (each would train the same runs twice)")
        return sweep

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, settings in variants.items():
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,49}", name):
                raise ValueError(f"variants: {name!r} must be a plain name (letters, digits, . _ + -)")
            for key in settings:
                if key.split(".")[0] not in ("task", "model", "optimizer", "train"):
                    raise ValueError(
                        f"variants.{name}.{key}: keys are dotted paths under task, model, optimizer, train"
                    )
        return variants

    @model_validator(mode="after")
    def _run_count(self) -> Experiment:
        for name, settings in self.variants.items():
            for key in settings:
                if key in self.sweep:
                    raise ValueError(f"variants.{name}.{key}: also swept; allowed: keys the sweep does not set")
        seeds = self.seeds if isinstance(self.seeds, int) else len(self.seeds)  # (a count is never made a list here)
        runs = math.prod(len(v) for v in self.sweep.values()) * seeds * max(1, len(self.variants))
        if runs > MAX_RUNS:
            shape = " x ".join(
                ([f"{len(self.variants)} variants"] if self.variants else [])
                + [str(len(v)) for v in self.sweep.values()]
                + [f"{seeds:,} seeds"]
            )
            raise ValueError(f"seeds: {shape} = {runs:,} runs; at most {MAX_RUNS:,} in one experiment (split it)")
        return self

    @property
    def seed_list(self) -> list[int]:
        """The seeds as a list."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def base(self) -> dict[str, Any]:
        """The run-level part of the spec as plain data (no name/seeds/sweep/variants)."""
        return self.model_dump(mode="json", include={"task", "model", "optimizer", "train", "measures"})


# ---------------------------------------------------------------------------------------------------
# Validation, expansion, error messages and the field reference

SECTIONS: dict[str, list[type[BaseModel]]] = {
    "": [Experiment],
    "task": [ModularTask, PermutationTask, AdditionTask, ParityTask, ImageTask, TeacherTask, ArrayTask, FunctionTask],
    "model": [MLPModel, TransformerModel, ModuleModel, KernelModel],
    "optimizer": [OptimizerConfig],
    "optimizer.grokfast": [GrokfastConfig],
    "optimizer.muon": [MuonConfig],
    "train": [TrainConfig],
    "measures": [MeasuresConfig],
    **{f"measures.{name}": [options] for name, options in OPTIONS.items()},
}
"""Spec section -> the config classes whose fields may appear there."""


def format_validation_error(error: ValidationError) -> str:
    """One line naming the offending key and what is allowed (first error only)."""
    first = error.errors()[0]
    # Drop discriminator tags (e.g. 'modular' in task.modular.modulus) from the location.
    tags = (
        "modular",
        "permutation",
        "addition",
        "parity",
        "images",
        "teacher",
        "arrays",
        "function",
        "mlp",
        "transformer",
        "module",
        "rfm",
        "function-after",
    )
    # A tag follows the section it discriminates (model.transformer.mlp): drop it there, and only there (a field
    # may share a tag's name, as the transformer's `mlp`).
    parts = [str(part) for part in first["loc"]]
    loc = [p for i, p in enumerate(parts)
           if not (p == "function-after" or p in tags and i > 0 and parts[i - 1] in ("task", "model"))]  # fmt: skip
    key = ".".join(loc)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        parent = ".".join(loc[:-1])
        return f"{key}: unknown key{_allowed_keys(parent)}"
    if message.startswith(f"{key}:") or message.startswith(f"{key}.") or not key:
        return message  # a validator that names its own key
    if message.split(":", 1)[0].isidentifier():
        return f"{key}.{message}"  # a section's validator naming one of its fields: optimizer + lr: ... -> optimizer.lr
    got = first.get("input")
    shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
    if first["type"] == "union_tag_invalid":
        return f"{key}.name: {message}"
    return f"{key}: {message}{shown}"


def _allowed_keys(parent: str) -> str:
    fields = sorted({f.alias or n for cls in SECTIONS.get(parent, []) for n, f in cls.model_fields.items()})
    return f"; allowed: {', '.join(fields)}" if fields else ""


def parse_experiment(data: Any, source: str = "spec") -> Experiment:
    """Validate plain data (from YAML or Python) into an Experiment, or raise SpecError."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: must be a mapping of keys (name, task, model, optimizer, train, measures, seeds, sweep)"
        )
    try:
        return Experiment.model_validate(data)
    except ValidationError as error:
        raise SpecError(format_validation_error(error)) from None


def expand_runs(experiment: Experiment) -> list[RunConfig]:
    """Every variant x every sweep point x every seed, resolved and validated, in a stable order."""
    keys = list(experiment.sweep)
    runs: list[RunConfig] = []
    base = experiment.base()
    for key in keys:
        _check_sweep_key(base, key, "sweep")
    for name, settings in (experiment.variants or {"": {}}).items():
        variant = copy.deepcopy(base)
        for key, value in settings.items():
            _check_sweep_key(base, key, f"variants.{name}")
            set_dotted(variant, key, value)
        _reset_family_defaults(base, variant, list(settings))
        grid = itertools.product(*(experiment.sweep[k] for k in keys)) if keys else [()]
        for point in grid:
            data = copy.deepcopy(variant)
            for key, value in zip(keys, point):
                set_dotted(data, key, value)
            _reset_family_defaults(variant, data, keys)
            for seed in experiment.seed_list:
                try:
                    runs.append(RunConfig.model_validate({**data, "seed": seed, "variant": name}))
                except ValidationError as error:
                    point_text = ", ".join(f"{k}={v}" for k, v in zip(keys, point))
                    where = "; ".join([f"variant {name}"] * bool(name) + [f"sweep point {point_text}"] * bool(keys))
                    line = format_validation_error(error)
                    raise SpecError(f"{line} ({where})" if where else line) from None
    return runs


def _check_sweep_key(base: dict[str, Any], key: str, where: str) -> None:
    if key in ("task.name", "model.name"):
        return
    node: Any = base
    if key.rsplit(".", 1)[0] in ("optimizer.on_memorized", "optimizer.on_generalized") or key.startswith(
        "optimizer.param_groups."
    ):
        return  # mappings filled by the sweep itself; their keys are validated with the run
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            parent = key.rsplit(".", 1)[0]
            raise SpecError(f"{where}.{key}: unknown key{_allowed_keys(parent)}")
        node = node[part]


def _reset_family_defaults(base: dict[str, Any], data: dict[str, Any], keys: list[str]) -> None:
    """When a sweep changes task.name or model.name, drop the other family's defaulted keys."""
    for section in ("task", "model"):
        if f"{section}.name" in keys and data[section]["name"] != base[section]["name"]:
            swept = {k.split(".", 1)[1] for k in keys if k.startswith(f"{section}.")}
            data[section] = {k: v for k, v in data[section].items() if k in swept}


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and tuples stay values."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = list(value) if isinstance(value, tuple) else value
    return flat


Runs = list[tuple[str, RunConfig]]
"""(run id, config) pairs: the runs of one stack, in stack order, or of a whole experiment."""


def run_params(run: RunConfig) -> dict[str, Any]:
    """Every resolved parameter of a run as dotted key -> value (seed included; variant when it has one)."""
    return flatten(run.model_dump(mode="json", exclude={"variant"} if not run.variant else None))


def field_reference() -> str:
    """The documentation of every spec key, one line each (used by --help and docs/spec.md)."""
    lines = []
    for section, classes in SECTIONS.items():
        prefix = f"{section}." if section else ""
        for cls in classes:
            for attribute, field in cls.model_fields.items():
                name = field.alias or attribute  # as a spec writes it (optimizer.class)
                if f"{prefix}{name}" in SECTIONS:  # the sections themselves are listed key by key
                    continue
                doc = " ".join((field.description or "").split())
                default = field.get_default(call_default_factory=True)
                scope = f" [{cls.__name__}]" if prefix in ("task.", "model.") else ""
                lines.append(f"{prefix}{name}{scope} (default {default!r}): {doc}")
    return "\n".join(lines)
