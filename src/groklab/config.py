"""Experiment specs: what a user writes (YAML or Python), validated into typed configs.

An experiment is `name`, `task`, `model`, `optimizer`, `train`, `seeds` and an optional `sweep` grid.
Every combination of sweep values x every seed is one *run*; `expand_runs` resolves each run into a
complete `RunConfig`, and every resolved run is validated before anything is trained or written.

Every field carries a docstring: they are the reference (`groklab run --help`, docs/spec.md).
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_STRICT = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)

POLYNOMIAL_OPERATIONS = ("x2+y2", "x2+xy+y2", "x2+xy+y2+x", "x3+xy", "x3+xy2+y")
ModularOperation = Literal["add", "sub", "mul", "div", "x2+y2", "x2+xy+y2", "x2+xy+y2+x", "x3+xy", "x3+xy2+y"]


class SpecError(ValueError):
    """A spec the user wrote is wrong; the message is one line naming the key and what is allowed."""


class ModularTask(BaseModel):
    """Binary operation a ∘ b mod p over all pairs (a, b), as in Power et al. 2022 and Gromov 2023.

    Encoded example (operation add, modulus 7): the pair (a=3, b=5) is the input tokens [3, 5] and
    its label is (3 + 5) mod 7 = 1. An MLP with one-hot input sees [e_3 | e_5], a vector of 2p entries.
    """

    model_config = _STRICT
    name: Literal["modular"] = "modular"
    """Task family: modular arithmetic."""
    operation: ModularOperation = "add"
    """add: a+b; sub: a-b; mul: a*b; div: a*b^-1 (b != 0, modulus prime); polynomials of Power et al.:
    x2+y2, x2+xy+y2, x2+xy+y2+x, x3+xy, x3+xy2+y (x = a, y = b), all mod p."""
    modulus: int = Field(97, ge=2)
    """p: the modulus; labels and operands are residues 0..p-1. Must be prime for div."""
    train_fraction: float = 0.5
    """Fraction of the (eligible) pairs used for training, drawn per seed; the rest is the test set.
    In (0, 1); 1 is allowed only with holdout_labels (then the test set is exactly the held-out labels)."""
    label_noise: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of training labels replaced by a different, uniformly random label (Doshi et al. 2023).
    Exactly round(label_noise * n_train) examples are corrupted; their indices are recorded."""
    holdout_labels: list[int] = []
    """Every example whose label is in this list goes to the test set (seed 003, exp3)."""

    @model_validator(mode="after")
    def _check(self) -> ModularTask:
        p = self.modulus
        if self.operation == "div" and not _is_prime(p):
            raise ValueError(f"task.modulus: {p} is not prime; division a*b^-1 mod p needs a prime modulus")
        top = 1.0 if self.holdout_labels else 1.0 - 1e-12
        if not 0.0 < self.train_fraction <= top:
            allowed = "(0, 1]" if self.holdout_labels else "(0, 1) (1 only together with holdout_labels)"
            raise ValueError(f"task.train_fraction: {self.train_fraction} is outside {allowed}")
        bad = [label for label in self.holdout_labels if not 0 <= label < p]
        if bad:
            raise ValueError(f"task.holdout_labels: {bad} are not residues 0..{p - 1}")
        return self


class ParityTask(BaseModel):
    """Sparse (n, k)-parity (Barak et al. 2022): x uniform in {-1,1}^n, y = prod_{i in S} x_i, |S| = k.

    Encoded example (n_bits 4, k 2, coordinates [0, 1]): x = [-1, 1, 1, -1] has parity -1 * 1 = -1,
    which is class 1 (class 0 is parity +1, class 1 is parity -1).
    """

    model_config = _STRICT
    name: Literal["parity"] = "parity"
    """Task family: sparse parity."""
    n_bits: int = Field(50, ge=1)
    """n: length of the input vector."""
    k: int = Field(2, ge=1)
    """k: number of coordinates whose product is the label."""
    coordinates: list[int] | None = None
    """The k relevant coordinates (0-based); null means the first k, as in seed 001 (x1 * x2)."""
    n_train: int = Field(300, ge=1)
    """Training examples, sampled per seed."""
    n_test: int = Field(100, ge=1)
    """Test examples, sampled per seed (labels always clean)."""
    label_noise: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of training labels flipped (seed 001, Hypothesis 2); exactly round(label_noise * n_train)."""

    @model_validator(mode="after")
    def _check(self) -> ParityTask:
        if self.k > self.n_bits:
            raise ValueError(f"task.k: {self.k} is larger than task.n_bits ({self.n_bits}); allowed 1..n_bits")
        if self.coordinates is not None:
            coords = self.coordinates
            if len(coords) != self.k or len(set(coords)) != self.k or not all(0 <= c < self.n_bits for c in coords):
                raise ValueError(
                    f"task.coordinates: {coords} must be {self.k} distinct indices in 0..{self.n_bits - 1}"
                )
        return self

    @property
    def relevant(self) -> list[int]:
        """The coordinates whose product is the label."""
        return list(self.coordinates) if self.coordinates is not None else list(range(self.k))


Activation = Literal["quadratic", "relu", "gelu", "tanh", "sigmoid", "silu", "identity"]


class MLPModel(BaseModel):
    """Multi-layer perceptron with a run axis (Gromov 2023; the parity net of Barak et al.)."""

    model_config = _STRICT
    name: Literal["mlp"] = "mlp"
    """Architecture: mlp."""
    width: int = Field(500, ge=1)
    """N: neurons per hidden layer."""
    depth: int = Field(1, ge=1)
    """Number of hidden layers (1 = Gromov's 2-layer network: W_in, activation, W_out)."""
    activation: Activation = "relu"
    """Nonlinearity: quadratic (x^2, Gromov), relu, gelu, tanh, sigmoid, silu, identity."""
    bias: bool = True
    """Whether the linear layers have biases (Gromov: no)."""
    init: Literal["default", "gromov"] = "default"
    """default: PyTorch nn.Linear init U(+-1/sqrt(fan_in)), embeddings N(0,1);
    gromov: N(0, 0.25 / (2N)^(2/3)) for W_in and W_out, as the fcn model of Gromov's repository."""
    init_scale: float = Field(1.0, gt=0.0)
    """alpha: every parameter (weights and biases) is multiplied by this after init (Omnigrok, Liu 2023)."""
    embedding: Literal["one_hot", "learned"] = "one_hot"
    """Token tasks only. one_hot: W_in acts on the concatenated one-hots of a and b (2p inputs);
    learned: a shared embedding W_E (p x embedding_dim) per operand, concatenated, then W_in."""
    embedding_dim: int = Field(128, ge=1)
    """Size of a learned embedding (embedding: learned only)."""


class OptimizerConfig(BaseModel):
    """Optimizer; every hyperparameter here may differ between the runs of one stack."""

    model_config = _STRICT
    name: Literal["sgd", "adam", "adamw"] = "adamw"
    """sgd (with optional momentum, L2 weight decay), adam (L2 weight decay), adamw (decoupled decay)."""
    lr: float = 1e-3
    """Peak learning rate, > 0."""
    weight_decay: float = Field(0.0, ge=0.0)
    """Weight decay coefficient (decoupled for adamw, added to the gradient for sgd and adam)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam/AdamW moment decay rates (beta1, beta2), each in [0, 1)."""
    eps: float = Field(1e-8, gt=0.0)
    """Adam/AdamW denominator epsilon (Thilak et al.: controls the slingshot)."""
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    """SGD momentum (heavy ball, no dampening); sgd only."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warmup: lr * min(1, step / warmup_steps), step counted from 0 as in Power's and Nanda's code."""

    @field_validator("lr")
    @classmethod
    def _lr_positive(cls, lr: float) -> float:
        if not lr > 0:
            raise ValueError(f"optimizer.lr: {lr} must be > 0")
        return lr

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"optimizer.betas: {list(betas)} must both be in [0, 1)")
        return betas

    @model_validator(mode="after")
    def _momentum_only_for_sgd(self) -> OptimizerConfig:
        if self.momentum and self.name != "sgd":
            raise ValueError(f"optimizer.momentum: only sgd has momentum (optimizer.name is {self.name})")
        return self


class TrainConfig(BaseModel):
    """Training budget, loss, evaluation schedule and numerics."""

    model_config = _STRICT
    steps: int = Field(10_000, ge=1)
    """Optimizer steps per run."""
    batch_size: int | None = Field(None, ge=1)
    """Minibatch size (reshuffled every epoch, per run); null = full batch."""
    loss: Literal["cross_entropy", "mse", "hinge"] = "cross_entropy"
    """cross_entropy; mse on one-hot targets (mean over examples and classes, Gromov);
    hinge: multi-class margin loss (torch multi_margin_loss, Merrill et al.)."""
    eval_every: int | Literal["log"] = Field(100)
    """Evaluate train and test loss/accuracy every this many steps, or "log" for ~100 log-spaced steps.
    Step 0 and the last step are always evaluated. Events are read at evaluated steps only."""
    dtype: Literal["float32", "float64"] = "float32"
    """Floating point type of parameters and activations."""
    stop_after_generalized: int | None = Field(None, ge=0)
    """Keep training this many steps after a run generalized, then stop it; null = never stop early."""

    @field_validator("eval_every")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"train.eval_every: {value} must be >= 1 or 'log'")
        return value


Task = Annotated[ModularTask | ParityTask, Field(discriminator="name")]
Model = Annotated[MLPModel, Field(discriminator="name")]


def _default_names(data: Any) -> Any:
    """Let users omit task.name / model.name (modular, mlp) although they discriminate the unions."""
    if isinstance(data, dict):
        data = dict(data)
        for key, default in (("task", "modular"), ("model", "mlp")):
            if isinstance(data.get(key), dict) and "name" not in data[key]:
                data[key] = {"name": default, **data[key]}
    return data


class RunConfig(BaseModel):
    """One fully resolved run: what the engine trains."""

    model_config = _STRICT
    _names = model_validator(mode="before")(_default_names)
    task: Task = Field(default_factory=ModularTask)
    """The data: task.name is modular or parity."""
    model: Model = Field(default_factory=MLPModel)
    """The network: model.name is mlp."""
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """The optimizer and its hyperparameters."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Budget, loss, evaluation schedule, dtype."""
    seed: int = 0
    """Seed of this run: its data split/sample, label noise, init and batch order."""

    @model_validator(mode="after")
    def _compatible(self) -> RunConfig:
        if isinstance(self.task, ParityTask) and self.model.embedding == "learned":
            raise ValueError("model.embedding: parity inputs are vectors; use one_hot (the default) for parity")
        return self


class Experiment(BaseModel):
    """An experiment: a base run, seeds, and a sweep grid. Each (sweep point, seed) is one run."""

    model_config = _STRICT
    _names = model_validator(mode="before")(_default_names)
    name: str = "experiment"
    """Name of the experiment (used for the default output directory)."""
    description: str = ""
    """One line saying what the experiment shows (shown by groklab list)."""
    task: Task = Field(default_factory=ModularTask)
    """The data (see task.* keys)."""
    model: Model = Field(default_factory=MLPModel)
    """The network (see model.* keys)."""
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """The optimizer (see optimizer.* keys)."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Training (see train.* keys)."""
    seeds: int | list[int] = 1
    """A count n (seeds 0..n-1) or an explicit list of seeds."""
    sweep: dict[str, list[Any]] = {}
    """Grid: dotted key -> list of values; every combination x every seed is one run."""

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: int | list[int]) -> int | list[int]:
        if isinstance(seeds, int) and seeds < 1:
            raise ValueError(f"seeds: {seeds} must be a count >= 1 or a list of integers")
        if isinstance(seeds, list) and (not seeds or len(set(seeds)) != len(seeds)):
            raise ValueError(f"seeds: {seeds} must be a non-empty list of distinct integers")
        return seeds

    @field_validator("sweep")
    @classmethod
    def _sweep(cls, sweep: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in sweep.items():
            if key.split(".")[0] not in ("task", "model", "optimizer", "train"):
                raise ValueError(f"sweep.{key}: sweep keys are dotted paths under task, model, optimizer, train")
            if not values:
                raise ValueError(f"sweep.{key}: needs at least one value")
        return sweep

    @property
    def seed_list(self) -> list[int]:
        """The seeds as a list."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def base(self) -> dict[str, Any]:
        """The run-level part of the spec as plain data (no name/seeds/sweep)."""
        return self.model_dump(mode="json", include={"task", "model", "optimizer", "train"})


# ---------------------------------------------------------------------------------------------------
# Parsing, overrides, expansion, error messages


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """One line naming the offending key and what is allowed (first error only)."""
    first = error.errors()[0]
    # Drop discriminator tags (e.g. 'modular' in task.modular.modulus) from the location.
    loc = [str(part) for part in first["loc"] if part not in ("modular", "parity", "mlp", "function-after")]
    key = prefix + ".".join(loc)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        parent = ".".join(loc[:-1])
        return f"{key}: unknown key{_allowed_keys(parent)}"
    if message.startswith(f"{key}:"):
        return message
    got = first.get("input")
    shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
    if first["type"] == "union_tag_invalid":
        return f"{key}.name: {message}"
    return f"{key}: {message}{shown}"


def _allowed_keys(parent: str) -> str:
    classes: dict[str, list[type[BaseModel]]] = {
        "": [Experiment],
        "task": [ModularTask, ParityTask],
        "model": [MLPModel],
        "optimizer": [OptimizerConfig],
        "train": [TrainConfig],
    }
    fields = sorted({f for cls in classes.get(parent, []) for f in cls.model_fields})
    return f"; allowed: {', '.join(fields)}" if fields else ""


def parse_experiment(data: Any, source: str = "spec") -> Experiment:
    """Validate plain data (from YAML or Python) into an Experiment, or raise SpecError."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: must be a mapping of keys (name, task, model, optimizer, train, seeds, sweep)")
    try:
        return Experiment.model_validate(data)
    except ValidationError as error:
        raise SpecError(format_validation_error(error)) from None


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML spec file, raising SpecError for a missing or malformed file."""
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file (give a YAML path or a built-in name: groklab list)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{path}: malformed YAML{where}: {getattr(error, 'problem', error)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping (name, task, model, optimizer, train, seeds, sweep)")
    return data


def parse_scalar(text: str) -> Any:
    """Parse a command-line value as a YAML scalar (0.01 -> float, true -> bool, [0.9, 0.98] -> list)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """data['a']['b'] = value for key 'a.b' (creating mappings on the way)."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None else child
            if not isinstance(child, dict):
                raise SpecError(f"{key}: {part} is not a mapping")
            node[part] = child
        node = child
    node[parts[-1]] = value


def apply_overrides(
    data: dict[str, Any], sets: list[str] | None = None, sweeps: list[str] | None = None
) -> dict[str, Any]:
    """Apply `--set KEY=VALUE` and `--sweep KEY=V1,V2` to raw spec data (a copy is returned)."""
    data = copy.deepcopy(data)
    for item in sets or []:
        key, value = _split_assignment(item, "--set")
        set_dotted(data, key, parse_scalar(value))
    for item in sweeps or []:
        key, values = _split_assignment(item, "--sweep")
        sweep = data.setdefault("sweep", {}) or {}
        if not isinstance(sweep, dict):
            raise SpecError("sweep: must be a mapping of dotted key -> list of values")
        sweep[key] = [parse_scalar(v) for v in _split_values(values)]
        data["sweep"] = sweep
    return data


def _split_assignment(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"{flag} {item}: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=0.01")
    return key.strip(), value.strip()


def _split_values(text: str) -> list[str]:
    """Split V1,V2,... on commas outside brackets, so betas=[0.9,0.98],[0.9,0.999] works."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    return [v.strip() for v in values if v.strip()]


def expand_runs(experiment: Experiment) -> list[RunConfig]:
    """Every sweep point x every seed, resolved and validated, in a stable order."""
    keys = list(experiment.sweep)
    grid = itertools.product(*(experiment.sweep[k] for k in keys)) if keys else [()]
    runs: list[RunConfig] = []
    base = experiment.base()
    for point in grid:
        data = copy.deepcopy(base)
        for key, value in zip(keys, point):
            _check_sweep_key(base, key)
            set_dotted(data, key, value)
        _reset_task_defaults(base, data, keys)
        for seed in experiment.seed_list:
            try:
                runs.append(RunConfig.model_validate({**data, "seed": seed}))
            except ValidationError as error:
                where = ", ".join(f"{k}={v}" for k, v in zip(keys, point))
                line = format_validation_error(error)
                raise SpecError(f"{line} (sweep point {where})" if where else line) from None
    return runs


def _check_sweep_key(base: dict[str, Any], key: str) -> None:
    node: Any = base
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            if key.split(".")[:2] == ["task", "name"] or key.split(".")[:2] == ["model", "name"]:
                return
            parent = key.rsplit(".", 1)[0]
            raise SpecError(f"sweep.{key}: unknown key{_allowed_keys(parent)}")
        node = node[part]


def _reset_task_defaults(base: dict[str, Any], data: dict[str, Any], keys: list[str]) -> None:
    """When a sweep changes task.name, drop the other family's defaulted keys."""
    if "task.name" in keys and data["task"]["name"] != base["task"]["name"]:
        swept = {k.split(".", 1)[1] for k in keys if k.startswith("task.")}
        data["task"] = {k: v for k, v in data["task"].items() if k in swept}


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


def run_params(run: RunConfig) -> dict[str, Any]:
    """Every resolved parameter of a run as dotted key -> value (seed included)."""
    return flatten(run.model_dump(mode="json"))


def field_reference() -> str:
    """The documentation of every spec key, one line each (used by --help and docs/spec.md)."""
    lines = []
    sections: list[tuple[str, list[type[BaseModel]]]] = [
        ("", [Experiment]),
        ("task.", [ModularTask, ParityTask]),
        ("model.", [MLPModel]),
        ("optimizer.", [OptimizerConfig]),
        ("train.", [TrainConfig]),
    ]
    for prefix, classes in sections:
        for cls in classes:
            for name, field in cls.model_fields.items():
                if prefix == "" and name in ("task", "model", "optimizer", "train"):
                    continue
                doc = " ".join((field.description or "").split())
                default = field.get_default(call_default_factory=True)
                scope = f" [{cls.__name__}]" if prefix == "task." else ""
                lines.append(f"{prefix}{name}{scope} (default {default!r}): {doc}")
    return "\n".join(lines)
