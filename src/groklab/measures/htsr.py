"""Heavy-tailed self-regularization (Martin & Mahoney; Prakash & Martin 2025 on grokking and anti-grokking): the
power-law exponent of each weight matrix's eigenvalue spectrum, and its correlation traps.

Conventions, once, as WeightWatcher 0.7.7 takes them (weightwatcher.py: combined_eigenvalues, random_eigenvalues,
mp_fit; WW_powerlaw.py: WWFit):
- The ESD of W (N x M, N >= M; Model.matrices' orientation does not matter) is lambda_i = s_i^2, i = 1..M,
  unnormalized; eigenvalues <= 1e-5 are left out of the fit (EVALS_THRESH).
- alpha: for each candidate x_min among the sorted eigenvalues (all but the largest), the continuous power law's
  maximum-likelihood exponent on the tail x >= x_min,
      alpha(x_min) = 1 + n / sum_{x_j >= x_min} log(x_j / x_min),  n the tail's size,
  and the Kolmogorov-Smirnov distance D(x_min) = max_j |1 - (x_j / x_min)^(1 - alpha) - (j - i) / n| between its
  CDF and the tail's empirical CDF; the x_min with the smallest D is kept (Clauset et al. 2009). alpha ~ 2 marks a
  well-trained layer; > 6 a random-like one. WeightWatcher switches to another estimator below 20 eigenvalues: so
  that no number means something else, alpha is NaN there.
- Correlation traps: W with its elements shuffled (one permutation per run, from the run's seed) has no
  correlations left, so its ESD should be a Marchenko-Pastur bulk; eigenvalues beyond the bulk's edge are traps
  (large elements that a shuffle cannot scatter, "heralds of anti-grokking"). With the ESD scaled to mean 1
  (WeightWatcher's rescale), a shuffled matrix's bulk has variance 1 and edge (1 + 1/sqrt(Q))^2, Q = N / M;
  WeightWatcher fits the variance to a kernel density estimate of the bulk instead, and so can differ where the
  bulk is not yet MP-like. A trap lies beyond the edge plus WeightWatcher's Tracy-Widom margin
  sqrt(Q^-1/2 edge^(2/3) M^(-2/3)). One shuffle per evaluation (WeightWatcher takes 5 when M < 100 and counts
  over all 5).

Every step is a batched operation over the run axis (svdvals of (run, N, M), an (run, M, M) table of KS distances).
"""

from __future__ import annotations

import math

import torch

from groklab.measures.probe import Probe
from groklab.measures.registry import register
from groklab.seeds import derive_seed

EVALS_THRESH = 1e-5
"""Eigenvalues at or below this are left out of the power-law fit (WeightWatcher's EVALS_THRESH)."""
MIN_EVALS = 20
"""Fewer eigenvalues than this above EVALS_THRESH: no alpha (WeightWatcher's SMALL_N_CUTOFF, where it changes
estimator)."""


def esd(W: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of W^T W (run, M), ascending, in float64: the squared singular values of W (run, N, M)."""
    return torch.linalg.svdvals(W.double()).square().flip(-1)


def power_law_alpha(evals: torch.Tensor) -> torch.Tensor:
    """alpha (run,) of eigenvalues (run, M) (any order): the exponent at the x_min of least KS distance.

    A power law's own quantiles give alpha back (here alpha = 3: x = (1 - u)^(-1 / (alpha - 1))):

    >>> u = (torch.arange(2000, dtype=torch.float64) + 0.5) / 2000
    >>> power_law_alpha((1 - u).pow(-1 / 2.0)[None]).round(decimals=2)
    tensor([3.], dtype=torch.float64)
    """
    return power_law_fit(evals)[0]


def power_law_fit(evals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, x_min), each (run,), of eigenvalues (run, M): WWFit's fit, every candidate x_min at once."""
    x = evals.double().sort(dim=-1).values
    M = x.shape[-1]
    valid = x > EVALS_THRESH
    log_x = torch.where(valid, x, 1.0).log()
    tail_sum = log_x.flip(-1).cumsum(-1).flip(-1)  # sum_{j >= i} log x_j
    i = torch.arange(M, device=x.device)
    n = (M - i).to(x.dtype)
    alpha = 1 + n / (tail_sum - n * log_x)  # (run, M): at each candidate x_min = x_i
    ratio = x[..., None, :] / torch.where(valid, x, 1.0)[..., :, None]  # (run, i, j)
    model_cdf = 1 - ratio.pow(1 - alpha[..., :, None])
    empirical = (i[None, :] - i[:, None]).to(x.dtype) / n[:, None]  # (j - i) / n
    in_tail = i[None, :] >= i[:, None]
    D = torch.where(in_tail, (model_cdf - empirical).abs(), 0.0).amax(dim=-1)
    D = torch.where(alpha > 1, D, 1.0)  # WWFit keeps D = 1 where the exponent is not a power law's
    D = torch.where(valid & (i < M - 1), D, math.inf)  # the largest is no x_min; nor an eigenvalue left out
    best = D.argmin(dim=-1, keepdim=True)  # the first of equal distances, as numpy's argmin
    enough = valid.sum(-1) >= MIN_EVALS
    chosen = torch.where(enough, alpha.gather(-1, best)[..., 0], math.nan)
    return chosen, torch.where(enough, x.gather(-1, best)[..., 0], math.nan)


def traps(W: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Correlation traps (run,) of W (run, N, M): eigenvalues of the element-shuffled W beyond the MP bulk.

    A matrix of independent entries has none; one whose few large entries dominate keeps them through a shuffle:

    >>> g = [torch.Generator().manual_seed(0)]
    >>> noise = torch.randn(1, 300, 200, generator=torch.Generator().manual_seed(1))
    >>> spiked = noise.clone(); spiked[0, :3, :3] += 40 * torch.eye(3)
    >>> traps(noise, g), traps(spiked, g)
    (tensor([0]), tensor([3]))
    """
    flat = W.detach().flatten(1)
    order = torch.stack([torch.randperm(flat.shape[1], generator=g) for g in generators]).to(W.device)
    return beyond_bulk(esd(flat.gather(1, order).view_as(W)), max(W.shape[1:]))


def beyond_bulk(evals: torch.Tensor, N: int) -> torch.Tensor:
    """How many eigenvalues (run, M) of an N x M matrix's ESD lie beyond the Marchenko-Pastur bulk of a matrix of
    exchangeable entries, scaled to mean 1, plus the Tracy-Widom margin: (run,)."""
    M = evals.shape[-1]
    Q = N / M
    scaled = evals * (M / evals.sum(dim=-1, keepdim=True))  # mean 1: a shuffled matrix's bulk has variance 1
    edge = (1 + 1 / math.sqrt(Q)) ** 2
    tracy_widom = math.sqrt(edge ** (2 / 3) * M ** (-2 / 3) / math.sqrt(Q))
    return (scaled > edge + tracy_widom).sum(dim=-1)


@register(
    "htsr_alpha",
    "power-law exponent alpha of each weight matrix's eigenvalue spectrum (WeightWatcher's fit), and the spectrum",
    "htsr_alpha.<matrix>: the tail x >= x_min of lambda = s(W)^2 fitted by maximum likelihood, x_min the one of "
    "least Kolmogorov-Smirnov distance; esd.<matrix>: the eigenvalues (a stored series)",
    "Martin & Mahoney 2021; Prakash & Martin 2025 (anti-grokking); WeightWatcher 0.7.7 (WWFit)",
    default=False,
)
def htsr_alpha(probe: Probe) -> dict[str, torch.Tensor]:
    out = {}
    for name, W in probe.matrices().items():
        evals = esd(W)
        out[f"htsr_alpha.{name}"] = power_law_alpha(evals).to(W.dtype)
        out[f"esd.{name}"] = evals.to(W.dtype)
    return out


@register(
    "correlation_traps",
    "eigenvalues of each element-shuffled weight matrix beyond the Marchenko-Pastur bulk (WeightWatcher's traps)",
    "correlation_traps.<matrix> = #{i : lambda_i M / sum(lambda) > (1 + Q^-1/2)^2 + Tracy-Widom margin}, lambda the "
    "ESD of W with its elements shuffled (each run's permutations drawn from its seed and the step), Q = N / M",
    "Prakash & Martin 2025; WeightWatcher 0.7.7 (analyze(randomize=True): rand_num_spikes)",
    default=False,
)
def correlation_traps(probe: Probe) -> dict[str, torch.Tensor]:
    generators = [torch.Generator().manual_seed(derive_seed(c.seed, "traps", probe.step)) for c in probe.configs]
    return {f"correlation_traps.{name}": traps(W, generators).to(W.dtype) for name, W in probe.matrices().items()}
