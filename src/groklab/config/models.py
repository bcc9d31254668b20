"""Model specs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from groklab.config.base import STRICT, Spec
from groklab.factories import named

Activation = Literal["quadratic", "relu", "gelu", "tanh", "sigmoid", "silu", "identity", "near_linear"]


class MLPModel(Spec):
    """Multi-layer perceptron with a run axis (Gromov 2023; the parity net of Barak et al.)."""

    model_config = STRICT
    name: Literal["mlp"] = "mlp"
    """Architecture: mlp."""
    width: int = Field(500, ge=1)
    """N: neurons per hidden layer."""
    depth: int = Field(1, ge=1)
    """Number of hidden layers (1 = Gromov's 2-layer network: W_in, activation, W_out)."""
    activation: Activation = "relu"
    """Nonlinearity: quadratic (x^2, Gromov), relu, gelu, tanh, sigmoid, silu, identity, near_linear
    (z + 0.01 z^2: Kumar et al.'s weakly nonlinear activation)."""
    bias: bool = True
    """Whether the linear layers have biases (Gromov: no)."""
    init: Literal["default", "gromov", "liu", "mean_field"] = "default"
    """default: PyTorch nn.Linear init U(+-1/sqrt(fan_in)), embeddings N(0,1);
    gromov: N(0, 0.25 / (2N)^(2/3)) for W_in and W_out, as the fcn model of Gromov's repository;
    liu: embeddings U(-1/2, 1/2), linear layers as default (Liu et al.'s toy, toy/train_add.py);
    mean_field: hidden weights N(0, 1 / fan_in), biases 0, W_out = 1 / width in every entry, so the output is the
    mean over neurons, f = (1/N) sum_i phi(w_i . x) (Kumar et al. 2024's network; freeze the readout with
    optimizer.param_groups.W_out.lr = 0 for their "no readout" training)."""
    init_scale: float = Field(1.0, gt=0.0)
    """alpha: every parameter (weights and biases) is multiplied by this after init (Omnigrok, Liu 2023)."""
    output_scale: float = Field(1.0, gt=0.0)
    """alpha of lazy training (Chizat et al. 2019; Kumar et al. 2024): the network's output is multiplied by it,
    and optimizer.lr and every optimizer.param_groups lr are divided by its square (not the on_memorized /
    on_generalized switches: they set their lr as written), so that a large alpha trains lazily (near its
    linearization, the kernel hardly moving) and a small one richly. Per run, inside a stack; pair it with
    `paired: true`, so a large alpha does not start from a large random function."""
    paired: bool = False
    """Draw the last hidden layer's neurons in pairs: the second half copies the first half's incoming weights
    and biases and negates its outgoing weights, and the output bias starts at 0, so the output at init is
    0, to rounding (Chizat et al. 2019's doubling trick; needs an even width)."""
    embedding: Literal["one_hot", "learned", "summed"] = "one_hot"
    """Token tasks only. one_hot: W_in acts on the concatenated one-hots of a and b (2p inputs);
    learned: a shared embedding W_E (p x embedding_dim) per operand, concatenated, then W_in;
    summed: W_E[a] + W_E[b] is the first layer's input (Liu et al.'s toy: a learned representation E of the
    operands, added, read by a decoder MLP; sequence "a b" only)."""
    embedding_dim: int = Field(128, ge=1)
    """Size of a learned or summed embedding (Liu et al.'s reprs_dim: 1)."""
    readout: Literal["linear", "templates"] = "linear"
    """linear: W_out gives one logit per class. templates (Liu et al.'s regression): W_out gives a vector of
    template_dim entries, and each class's score is minus the mean squared distance of that vector to the
    class's template, a fixed N(0, 1) vector drawn per seed and never trained; the prediction is the nearest
    template, and train.loss must be mse: the mean squared distance to the true class's template."""
    template_dim: int = Field(30, ge=1)
    """Length of the label templates (readout: templates; Liu et al.'s output_dim: 30)."""
    sequence: Literal["a b", "a op b ="] = "a b"
    """Token tasks only. The tokens the input layer sees: the operands "a b", or "a op b =" as the
    Grokking-MLP repository (seed 003) feeds its MLP (vocabulary p + 2; the op and = tokens are the same
    in every example, so they act as a learned bias of the first layer)."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on every hidden layer's output during training (Doshi et al. 2023: a regularizer against
    memorizing corrupted labels). Inverted dropout; each run draws its masks from its own generator."""
    batchnorm: bool = False
    """BatchNorm (Ioffe & Szegedy 2015) on every hidden layer's output, after the activation, as Doshi
    et al. 2023 place it: normalized by the batch's statistics while training and by running statistics
    (momentum 0.1, as torch.nn.BatchNorm1d) at evaluation; learned per-neuron scale gamma and shift beta."""

    @model_validator(mode="after")
    def _paired_width(self) -> MLPModel:
        if self.paired and self.width % 2:
            raise ValueError(f"model.width: {self.width} with model.paired; allowed: an even width (neurons in pairs)")
        return self


class TransformerModel(Spec):
    """Decoder-only transformer with a run axis: Nanda et al. 2023 (1 layer) and Power et al. 2022 (2 layers).

    The input pair (a, b) becomes the token sequence given by `sequence`; the answer is read at the
    last ("=") position. Weights are named as TransformerLens names them (W_E, W_pos, W_Q, W_K, W_V,
    W_O, W_in, W_out, W_U) and every activation has a named hook point.
    """

    model_config = STRICT
    name: Literal["transformer"] = "transformer"
    """Architecture: transformer."""
    sequence: Literal["a b =", "a op b ="] = "a b ="
    """Token sequence: Nanda's "a b =" (3 positions) or Power's "a op b =" (4 positions)."""
    n_layers: int = Field(1, ge=1)
    """Number of transformer blocks (Nanda 1, Power 2)."""
    d_model: int = Field(128, ge=1)
    """Width of the residual stream."""
    n_heads: int = Field(4, ge=1)
    """Attention heads per block."""
    d_head: int | None = Field(None, ge=1)
    """Width of each head; null = d_model / n_heads."""
    d_mlp: int = Field(512, ge=1)
    """Hidden width of each MLP block."""
    activation: Activation = "relu"
    """MLP nonlinearity."""
    layernorm: Literal["none", "pre", "post", "pre_stream"] = "none"
    """none (Nanda), pre (GPT-2: normalize each block's input, and the final residual), post
    (the original transformer: normalize after each residual addition), or pre_stream: as pre, but the
    attention's LayerNorm replaces the residual stream, so the attention output is added to the normalized
    input (ironjr/grokfast's Block: x = ln_1(x); x = x + attn(x); x = x + mlp(ln_2(x)))."""
    attention: Literal["causal", "full"] = "causal"
    """causal: a position attends to itself and earlier ones; full: to every position."""
    positional: Literal["learned", "sinusoidal", "rotary"] = "learned"
    """learned W_pos (Nanda), fixed sinusoidal encodings (Vaswani et al.; not trained), or rotary (Su et al. 2021;
    Llama): no position is added to the stream; each query and key is rotated by its position, the pairs (i, i +
    d_head/2) by pos / 10000^(2i / d_head) (GPT-NeoX's layout; needs an even d_head)."""
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    """The normalization wherever `layernorm` places one: LayerNorm (gain and bias), or RMSNorm (Zhang & Sennrich
    2019; Llama): x / sqrt(mean(x^2) + 1e-5) times a gain, no bias."""
    mlp: Literal["standard", "gated"] = "standard"
    """standard: act(x W_in + b_in) W_out + b_out; gated (GLU, Shazeer 2020; TransformerLens's GatedMLP):
    (act(x W_gate) * (x W_in + b_in)) W_out + b_out, which with activation silu is SwiGLU (Llama)."""
    tie_embeddings: bool = False
    """The unembedding is the token embedding, transposed: logits = x W_E[:n_classes]^T (no W_U). The classes must
    be tokens (the modular and permutation tasks)."""
    attention_rate: float = Field(1.0, ge=0.0, le=1.0)
    """alpha of Zhong et al. 2023 (the clock and the pizza): each key a query may attend gets weight
    alpha softmax + (1 - alpha), as their code computes it (not renormalized); 1 is attention, 0 constant attention
    (every visible key weighted 1)."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on attention patterns and on attention/MLP outputs during training (Power: option)."""
    attn_bias: bool = False
    """Biases b_Q, b_K, b_V, b_O in attention (Nanda: none)."""
    mlp_bias: bool = True
    """Biases b_in, b_out in the MLP (Nanda: yes)."""
    unembed_bias: bool = False
    """Bias b_U on the logits (Nanda: none)."""
    init: Literal["nanda", "default"] = "nanda"
    """nanda: every matrix N(0, 1/d_model) (W_U: N(0, 1/d_vocab)), biases 0, as Nanda's code;
    default: nn.Linear's U(+-1/sqrt(fan_in)), embeddings N(0, 1), LayerNorm 1/0."""
    init_scale: float = Field(1.0, gt=0.0)
    """alpha: every parameter is multiplied by this after init (Omnigrok, Liu 2023)."""

    @model_validator(mode="after")
    def _check_heads(self) -> TransformerModel:
        if self.d_head is None and self.d_model % self.n_heads:
            raise ValueError(
                f"model.n_heads: {self.n_heads} does not divide model.d_model ({self.d_model}); set model.d_head"
            )
        if self.positional == "rotary" and self.head_dim % 2:
            raise ValueError(f"model.positional: rotary turns pairs of a head's dimensions; d_head {self.head_dim} "
                             "is odd: allowed an even d_head")  # fmt: skip
        return self

    @property
    def head_dim(self) -> int:
        """d_head, resolved."""
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads


class ModuleModel(Spec):  # type: ignore[no-redef]  # (pydantic.mypy: a field named kwargs)
    """Your own network: a torch.nn.Module that `factory(**kwargs)` builds for one run (docs/extending.md).

    groklab calls the factory once per run with the run's init stream seeded (torch.manual_seed, so inits differ
    per seed and repeat exactly), stacks the runs' parameters and buffers with a leading run axis, and trains them
    as one batched module (models/module.py). The module maps a batch of the task's inputs (token pairs (batch, 2)
    of integers, or vectors (batch, d)) to logits (batch, n_classes), or to predictions (batch,) or (batch, 1) for
    a regression. Its hook points are its submodules' outputs, under their module paths. Measures that read a
    network's structure (Fourier of embeddings, neuron IPR, pruning) need the paths below.
    """

    model_config = STRICT
    name: Literal["module"] = "module"
    """Architecture: module (your own)."""
    factory: str
    """'package.module:function' returning a torch.nn.Module (in Python, the function itself). Looked up in the
    installed packages, the current directory and the spec's folder; naming it runs its code, as a script does."""
    kwargs: dict[str, Any] = {}
    """Keyword arguments of the factory (sweepable as model.kwargs.NAME)."""
    readout: str | None = None
    """Module path of the last layer (its weights are the last-layer norm, its input the representation);
    null: the last module with parameters of its own to run in the forward pass."""
    embedding: str | None = None
    """Module path of the token embedding (an nn.Embedding, or a parameter's name; rows are tokens): what the
    Fourier and representation measures of modular tasks read."""
    neurons: str | None = None
    """Module path of the nn.Linear whose outputs are the first hidden layer's pre-activations (neuron IPR,
    large neurons, pruning); give neuron_output with it."""
    neuron_output: str | None = None
    """Module path of the nn.Linear that reads those neurons (its weight's columns are their outgoing weights)."""
    init_scale: float = Field(1.0, gt=0.0)
    """alpha: every parameter is multiplied by this after the factory's init (Omnigrok, Liu 2023)."""

    @field_validator("factory", mode="before")
    @classmethod
    def _named(cls, factory: str | Callable[..., Any]) -> str:
        return named(factory, "model.factory")

    @model_validator(mode="after")
    def _neurons_both(self) -> ModuleModel:
        if (self.neurons is None) != (self.neuron_output is None):
            raise ValueError("model.neurons and model.neuron_output: give both (the layer in and the layer out)")
        return self


class KernelModel(Spec):
    """A Recursive Feature Machine (Radhakrishnan et al. 2024; Mallinar et al. 2025, nmallinar/rfm-grokking): kernel
    ridge regression on one-hot tokens with the Gaussian kernel exp(-(x - z)^T M (x - z) / (2 L^2)), whose feature
    matrix M is replaced at every step by the average gradient outer product (AGOP) of the fitted predictor, to the
    power agop_power. A step is one such iteration, in closed form: no gradient, no optimizer (models/rfm.py).
    Train it full batch, on the mse loss (the regression it solves), preferably in float64 (train.dtype)."""

    model_config = STRICT
    name: Literal["rfm"] = "rfm"
    """Architecture: rfm (a kernel machine: no network)."""
    bandwidth: float = Field(2.5, gt=0.0)
    """L: the Gaussian kernel's bandwidth (their --bandwidth, 2.5)."""
    ridge: float = Field(0.0, ge=0.0)
    """lambda: the ridge added to the kernel matrix before solving (theirs: 0, interpolation)."""
    agop_power: float = Field(0.5, gt=0.0)
    """s: M = AGOP^s (theirs: 1/2, the matrix square root)."""
    centering: bool = True
    """Whether the gradients are centered over the training points before their outer products are averaged
    (theirs: yes)."""
    neurons: ClassVar[None] = None  # no neurons: the measures that read them leave a kernel machine out
