"""Optimizer and training specs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from groklab.config.base import STRICT, Spec


class GrokfastConfig(Spec):
    """Grokfast's slow-gradient amplifier (Lee et al. 2024, ironjr/grokfast): between backward and the optimizer
    step every parameter's gradient g becomes g + lamb * h, h its slow component. Per run, inside a stack."""

    model_config = STRICT
    filter: Literal["none", "ema", "ma"] = "none"
    """none; ema: h is an exponential moving average of the gradients, h <- alpha h + (1 - alpha) g, starting
    from the first gradient (gradfilter_ema); ma: h is the mean of the last `window` gradients, and nothing is
    amplified until `window` gradients have been seen (gradfilter_ma)."""
    alpha: float = Field(0.98, ge=0.0, lt=1.0)
    """EMA momentum (ema only; the paper's 0.98)."""
    lamb: float | None = Field(None, ge=0.0)
    """Amplification factor lambda; null = the paper's 2.0 for ema, 5.0 for ma."""
    window: int = Field(100, ge=1)
    """MA window in steps (ma only; the paper's 100). Runs of one stack share it."""

    @property
    def amplification(self) -> float:
        """lamb, or the paper's default for the filter (0 without one)."""
        if self.filter == "none":
            return 0.0
        return self.lamb if self.lamb is not None else {"ema": 2.0, "ma": 5.0}[self.filter]


class MuonConfig(Spec):
    """Muon (Jordan et al. 2024; torch.optim.Muon): the weight matrices of the hidden layers step along their
    orthogonalized momentum; the embeddings, the readout and every vector train with AdamW at optimizer.lr,
    .weight_decay and .betas, as the reference pairs them. Per run, inside a stack (engine/muon.py). Warmup scales
    Muon's lr too; the on_memorized / on_generalized switches set the AdamW part's."""

    model_config = STRICT
    lr: float | None = Field(0.02, gt=0.0)
    """The matrices' learning rate (Keller Jordan's reference: 0.02), scaled per matrix by `adjust_lr`; null:
    optimizer.lr (with adjust_lr match_rms_adamw, AdamW's tuned lr carries over: the race tunes one lr for all)."""
    weight_decay: float | None = Field(None, ge=0.0)
    """The matrices' decoupled weight decay, p <- p (1 - lr wd); null: optimizer.weight_decay."""
    momentum: float = Field(0.95, ge=0.0, lt=1.0)
    """mu: the momentum buffer B <- mu B + (1 - mu) g (torch's lerp form), per run."""
    nesterov: bool = True
    """Orthogonalize g + mu (B - g) (Nesterov's look-ahead, the reference's default) instead of B."""
    ns_steps: int = Field(5, ge=1, le=99)
    """Newton-Schulz iterations of the quintic (a, b, c) = (3.4445, -4.7750, 2.0315), in bfloat16 as the
    reference computes them."""
    adjust_lr: Literal["original", "match_rms_adamw", "none"] = "original"
    """The lr of a fan_in x fan_out matrix: original (Jordan): lr sqrt(max(1, fan_out / fan_in));
    match_rms_adamw (Moonshot, Liu et al. 2025): 0.2 lr sqrt(max(fan_in, fan_out)), so AdamW's lr and decay carry
    over; none: lr."""


class OptimizerConfig(Spec):  # type: ignore[no-redef]  # (pydantic.mypy: a field named kwargs)
    """Optimizer; every hyperparameter here may differ between the runs of one stack."""

    model_config = ConfigDict(**STRICT, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)
    name: Literal["sgd", "adam", "adamw", "rmsprop", "muon", "torch"] = "adamw"
    """sgd (with optional momentum, L2 weight decay), adam (L2 weight decay), adamw (decoupled decay),
    rmsprop (torch.optim.RMSprop, not centered: L2 weight decay, optional momentum; Thilak et al.'s third
    adaptive optimizer), muon (Muon for the hidden matrices, AdamW for the rest: optimizer.muon.*), or torch: any
    torch.optim.Optimizer class (optimizer.class, engine/torch_optim.py)."""
    optimizer_class: str | None = Field(None, alias="class")
    """With name torch: the optimizer class, 'torch.optim.NAdam' or 'package.module:Class' (a torch.optim.Optimizer
    subclass; naming one of your own runs its code). Each run gets its own instance, called with lr and
    weight_decay from the keys above (when the class takes them) and `kwargs`; warmup, param_groups, switches,
    Grokfast and ⊥Grad apply to it."""
    kwargs: dict[str, Any] = {}
    """With name torch: the class's other keyword arguments (e.g. {betas: [0.9, 0.98], momentum_decay: 0.004});
    per run, inside a stack (sweep optimizer.kwargs.NAME)."""
    lr: float = 1e-3
    """Peak learning rate, > 0."""
    weight_decay: float = Field(0.0, ge=0.0)
    """Weight decay coefficient (decoupled for adamw, added to the gradient for sgd and adam)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam/AdamW moment decay rates (beta1, beta2), each in [0, 1)."""
    eps: float = Field(1e-8, gt=0.0)
    """Adam/AdamW/RMSProp denominator epsilon (Thilak et al.: controls the slingshot)."""
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    """Momentum (heavy ball, no dampening); sgd and rmsprop."""
    alpha: float = Field(0.99, ge=0.0, lt=1.0)
    """RMSProp's smoothing constant: the squared-gradient average decays by alpha each step; rmsprop only."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warmup: lr * min(1, step / warmup_steps), step counted from 0 as in Power's and Nanda's code."""
    param_groups: dict[str, dict[Literal["lr", "weight_decay"], float]] = {}
    """Parameters that train with their own lr and/or weight_decay instead of the ones above: parameter name
    (as `groklab` names them: W_E, W_in, W_out, ...) -> {lr, weight_decay}, e.g. {W_E: {lr: 0.001}}: Liu et al.'s
    representation learning rate, with optimizer.lr the decoder's. Per run, inside a stack: sweep
    optimizer.param_groups.W_E.lr. lr 0 freezes the parameter (Kumar et al.'s fixed readout: {W_out: {lr: 0}}).
    Warmup scales them too; on_memorized / on_generalized switch only lr and weight_decay above."""
    muon: MuonConfig = Field(default_factory=MuonConfig)
    """Muon's settings (optimizer.name muon): optimizer.muon.lr, .weight_decay, .momentum, ... (keys below)."""
    grokfast: GrokfastConfig = Field(default_factory=GrokfastConfig)
    """Grokfast's gradient filter: optimizer.grokfast.filter, .alpha, .lamb, .window (keys below)."""
    orthogonal: bool = False
    """⊥Grad (Prieto et al. 2025): before the update, each parameter tensor's gradient loses its component along
    the weights, g - (w.g / |w|^2) w, rescaled to the norm of g (any optimizer; per run, inside a stack)."""
    on_memorized: dict[Literal["lr", "weight_decay", "eps"], float] = {}
    """Hyperparameters a run switches to once it has memorized (train accuracy >= 99% at an evaluation),
    e.g. {weight_decay: 0.1}: seed 001's Hypothesis 1. Per run, inside a stack; sweep it as
    optimizer.on_memorized.weight_decay."""
    on_generalized: dict[Literal["lr", "weight_decay", "eps"], float] = {}
    """Hyperparameters a run switches to once it has generalized (test accuracy >= 99% at an evaluation)."""

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

    @field_validator("param_groups")
    @classmethod
    def _group_values(cls, groups: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for name, values in groups.items():
            for key, value in values.items():
                if value < 0:
                    where = f"optimizer.param_groups.{name}.{key}"
                    raise ValueError(f"{where}: {value}; allowed: lr >= 0 (0 freezes it), weight_decay >= 0")
        return groups

    @field_validator("on_memorized", "on_generalized")
    @classmethod
    def _switch_values(cls, values: dict[str, float]) -> dict[str, float]:
        for name, value in values.items():
            if value < 0 or (name in ("lr", "eps") and value == 0):
                raise ValueError(f"{name}: {value} is not allowed (lr and eps > 0, weight_decay >= 0)")
        return values

    @model_validator(mode="after")
    def _momentum_only_for_sgd_and_rmsprop(self) -> OptimizerConfig:
        if self.momentum and self.name not in ("sgd", "rmsprop"):
            raise ValueError(f"optimizer.momentum: only sgd and rmsprop have momentum (optimizer.name is {self.name})")
        if (self.name == "torch") != (self.optimizer_class is not None):
            raise ValueError("optimizer.class: a torch.optim class goes with optimizer.name torch, and only with it")
        if self.muon != MuonConfig() and self.name != "muon":
            raise ValueError(f"optimizer.muon: Muon's settings are for optimizer.name muon (it is {self.name})")
        if self.kwargs and self.name != "torch":
            raise ValueError(f"optimizer.kwargs: for optimizer.name torch only (optimizer.name is {self.name})")
        if "params" in self.kwargs:
            raise ValueError("optimizer.kwargs.params: groklab passes the parameters; allowed: the class's settings")
        if taken := sorted({"lr", "weight_decay"} & set(self.kwargs)):
            key = taken[0]
            raise ValueError(f"optimizer.kwargs.{key}: set optimizer.{key} (per run; warmup and switches apply to it)")
        return self


class TrainConfig(Spec):
    """Training budget, loss, evaluation schedule and numerics."""

    model_config = STRICT
    steps: int = Field(10_000, ge=1, le=10**12)
    """Optimizer steps per run (at most 10^12, a year of steps at 30 microseconds each, so that every schedule of
    steps fits an int64)."""
    batch_size: int | None = Field(None, ge=1)
    """Minibatch size (per run, taken as train.batch_order says); null = full batch."""
    batch_order: Literal["epochs", "draws"] = "epochs"
    """How minibatches are taken: epochs (each run reshuffles its training set every epoch and takes
    batch_size examples at a time; an epoch's last batch holds the rest) or draws (every step draws batch_size
    distinct examples at random, independently of the last: np.random.choice(n, batch_size, replace=False)
    in Liu et al.'s toy/train_add.py)."""
    loss: Literal["cross_entropy", "mse", "hinge", "stablemax"] = "cross_entropy"
    """cross_entropy; mse on one-hot targets (mean over examples and classes, Gromov), or with model.readout
    templates on the true class's template (mean over examples and template entries, Liu et al.);
    hinge: multi-class margin loss (torch multi_margin_loss, Merrill et al.); stablemax: cross-entropy of
    StableMax, s(z_y) / sum s(z) with s(x) = x + 1 (x >= 0), 1 / (1 - x) (x < 0), in float64 (Prieto et al.)."""
    eval_every: int | Literal["log"] = Field(100)
    """Evaluate train and test loss/accuracy every this many steps, or "log" for ~100 log-spaced steps.
    Step 0 and the last step are always evaluated. Events are read at evaluated steps only."""
    dtype: Literal["float32", "float64"] = "float32"
    """Floating point type of parameters and activations."""
    loss_dtype: Literal["float32", "float64"] = "float32"
    """Type the loss is computed in: float64 (Nanda) keeps log-softmax exact at very low losses."""
    tf32: bool = False
    """On a CUDA GPU, float32 matmuls and convolutions in TensorFloat-32 (a 10-bit mantissa; several times the
    full-precision rate on tensor cores); false: full float32 (engine/precision.py). A CPU ignores it."""
    stop_after_generalized: int | None = Field(None, ge=0)
    """Keep training this many steps after a run generalized, then stop it; null = never stop early."""
    stop_when_settled: int | None = Field(None, ge=1)
    """After a run generalized, stop it once its train and test accuracies have each stayed within
    settle_tolerance over this many steps: it has reached its phase (Doshi et al.'s inversion or
    coexistence). Needs a long enough window for slow drifts; null = never."""
    settle_tolerance: float = Field(0.002, ge=0.0, le=1.0)
    """How far (max - min) train and test accuracy may move over the stop_when_settled window."""
    checkpoint_every: int | None = Field(None, ge=1)
    """Checkpoint each stack every this many steps (null: every ~5 minutes of wall time), and always on Ctrl-C
    and SIGTERM: running the same command again resumes each unfinished run bit-identically from its last
    checkpoint (kill -9 loses at most the work since then)."""
    memory_gb: float | None = Field(None, gt=0.0)
    """Memory one stack of these runs may use, in GiB. An experiment whose estimated stack memory (data,
    parameters with optimizer state, activations) exceeds it is refused before anything is written;
    null = the device's memory (this machine's RAM for cpu, the GPU's for cuda)."""

    @field_validator("eval_every")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"train.eval_every: {value} must be >= 1 or 'log'")
        return value
