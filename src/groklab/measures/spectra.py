"""Ranks and entropies of the weights' and the features' singular values: signals that move before test accuracy.

Conventions, once:
- A weight matrix is Model.matrices' (run, fan_in, fan_out), attention heads side by side. Its singular values
  s_1 >= ... >= s_r, r = min(fan_in, fan_out), come from one torch.linalg.svdvals over the whole stack: the run
  axis is a batch axis of the decomposition, never a Python loop.
- A layer's features H (run, n, d) are its activations at the readout's position (Model.feature_hooks) over the
  training inputs, uncentered, as Fan et al. take them. The representation is the readout's input.
- p_i = s_i / sum_j s_j: the singular values as a distribution (DeMoss et al.'s and Roy & Vetterli's, not s_i^2).

    spectral entropy  H = -sum_i p_i log p_i     (DeMoss et al. 2024, brantondemoss/GrokkingComplexity: svd_entropy)
    effective rank    exp(H)                      (Roy & Vetterli 2007; Yunis et al. 2024)
    feature rank      #{i : s_i^2 > d eps s_1^2}  (Fan et al. 2024: the numerical rank of H^T H, d x d)

The feature rank's tolerance is torch.linalg.matrix_rank's default for the d x d matrix H^T H (largest eigenvalue x
its size x the dtype's machine epsilon), computed from H's singular values without forming H^T H: its eigenvalues
are s_i^2. "Numerical rank with a machine-precision threshold" is how Fan et al. define it; the matrix they take it
of is the features' second moment H^T H.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from groklab.measures.probe import Probe
from groklab.measures.registry import register


def spectral_entropy(s: torch.Tensor) -> torch.Tensor:
    """H (...,) of singular values s (..., r): the entropy of p = s / sum(s), 0 log 0 = 0.

    GrokkingComplexity adds 1e-9 inside the log, which changes H by less than r * 1e-9; entr is exact at zeros.

    >>> spectral_entropy(torch.tensor([[2.0, 2.0, 2.0, 2.0], [3.0, 0.0, 0.0, 0.0]]))  # log 4, and 0
    tensor([1.3863, 0.0000])
    """
    p = s / s.sum(dim=-1, keepdim=True)
    return torch.special.entr(p).sum(dim=-1)  # entr(p) = -p log p, 0 at p = 0


def effective_rank(s: torch.Tensor) -> torch.Tensor:
    """exp(H) (...,): how many singular values carry the matrix, continuously (r equal ones: r).

    >>> effective_rank(torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]))
    tensor([3., 2.])
    """
    return spectral_entropy(s).exp()


def numerical_rank(s: torch.Tensor, d: int) -> torch.Tensor:
    """#{i : s_i^2 > d eps s_1^2} (...,) for singular values s (..., r) of an n x d feature matrix, sorted descending:
    the rank torch.linalg.matrix_rank gives H^T H (eps: the dtype's machine epsilon).

    >>> H = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1e-5, 0.0]])  # rank 3, numerically 2
    >>> int(numerical_rank(torch.linalg.svdvals(H), 3)), int(torch.linalg.matrix_rank(H.T @ H))
    (2, 2)
    """
    eps = torch.finfo(s.dtype).eps
    return (s.square() > d * eps * s[..., :1].square()).sum(dim=-1).to(s.dtype)


def singular_values(H: torch.Tensor) -> torch.Tensor:
    """Singular values (run, r), descending, of a tall or wide H (run, n, d), r = min(n, d): the square roots of the
    eigenvalues of its smaller Gram matrix, formed in float64 (1.7x faster than svdvals on (8, 3830, 512) here; the
    Gram's rounding, n 1e-16 relative, lies far below feature_rank's tolerance, d 1e-7).

    >>> H = torch.tensor([[[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]]])
    >>> singular_values(H), singular_values(H.mT)
    (tensor([[4., 3.]]), tensor([[4., 3.]]))
    """
    H64 = H.double()
    gram = H64.mT @ H64 if H.shape[-2] >= H.shape[-1] else H64 @ H64.mT
    return torch.linalg.eigvalsh(gram).clamp(min=0).sqrt().flip(-1).to(H.dtype)


def _weight_spectra(probe: Probe) -> dict[str, torch.Tensor]:
    """Singular values (run, r) of every weight matrix, one batched SVD per matrix shape."""
    return {name: torch.linalg.svdvals(W) for name, W in probe.matrices().items()}


def _representation_spectrum(probe: Probe) -> torch.Tensor:
    """Singular values (run, r) of the representation the readout reads, over the training inputs."""
    return singular_values(probe.representations(probe.stacked["x_train"]).flatten(2))


def _of_each_spectrum(probe: Probe, prefix: str, of: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """`of` every weight matrix's singular values (prefix.<matrix>) and the representation's (prefix.representation)."""
    out = {f"{prefix}.{name}": of(s) for name, s in _weight_spectra(probe).items()}
    out[f"{prefix}.representation"] = of(_representation_spectrum(probe))
    return out


@register(
    "effective_rank",
    "effective rank exp(H) of each weight matrix's singular values and of the representation's",
    "effective_rank.<matrix> = exp(-sum_i p_i log p_i), p_i = s_i / sum_j s_j of W (fan_in x fan_out); "
    "effective_rank.representation: the same of the readout's input over the training inputs (n x d)",
    "Yunis et al. 2024 (grokking as rank minimization); Roy & Vetterli 2007",
    default=False,
)
def effective_rank_measure(probe: Probe) -> dict[str, torch.Tensor]:
    return _of_each_spectrum(probe, "effective_rank", effective_rank)


@register(
    "spectral_entropy",
    "entropy of each weight matrix's singular values, and of the representation's",
    "spectral_entropy.<matrix> = -sum_i p_i log p_i, p_i = s_i / sum_j s_j of W; spectral_entropy.representation: "
    "the same of the readout's input over the training inputs",
    "DeMoss et al. 2024 (The Complexity Dynamics of Grokking; brantondemoss/GrokkingComplexity, svd_entropy)",
    default=False,
)
def spectral_entropy_measure(probe: Probe) -> dict[str, torch.Tensor]:
    return _of_each_spectrum(probe, "spectral_entropy", spectral_entropy)


@register(
    "feature_rank",
    "numerical rank of each layer's features over the training inputs",
    "feature_rank.<hook> = #{i : s_i^2 > d eps s_1^2}, s the singular values of the features H (n x d) at the layer's "
    "hook point: torch.linalg.matrix_rank of H^T H",
    "Fan, Pascanu, Jaggi 2024 (Deep Grokking, Sec. 5)",
    default=False,
)
def feature_rank(probe: Probe) -> dict[str, torch.Tensor]:
    features = probe.activations(list(probe.model.feature_hooks), probe.stacked["x_train"])
    out = {}
    for name, H in features.items():
        H = H.flatten(2)  # (run, n, d)
        out[f"feature_rank.{name}"] = numerical_rank(singular_values(H), H.shape[-1])
    return out
