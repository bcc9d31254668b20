"""O-information of the hidden neurons: whether a layer's neurons share information redundantly (Omega > 0) or hold it
only jointly, synergistically (Omega < 0); Clauw, Marinazzo, Stramaglia 2024 find synergy peaking as a network groks.

Conventions, once, as kclauw/grokking-oinformation-icml computes it (src/oinformation/gcmi.py: copnorm, ent_g;
oinfo_jax_original.py: _oinfo_no_ent; clustering/hierarchical.py):
- The neurons are a layer's features (Model.feature_hooks[0]: the first hidden layer, after its activation) over the
  training inputs, each copula-normalized: its values replaced by ndtri(rank / (n + 1)), standard normal with the
  same order (the Gaussian copula: entropies of the ranks, not of the values).
- Entropies are Gaussian, of the sample covariance C (/(n - 1)), with ent_g's bias correction, in bits.
- Omega(S) = (m - 2) H(S) + sum_{j in S} [H(X_j) - H(S \\ j)] for a set S of m neurons (Rosas et al. 2019). Their
  code computes each H separately; here it is one Cholesky of C_S, because for Gaussians
      H(S \\ j) = H(S) - H(X_j | S \\ j),   det C_{S \\ j} = det C_S (C_S^-1)_jj,
  so Omega(S) = -log det C_S + 1/2 sum_j [log C_jj - log (C_S^-1)_jj] + bias terms, the 2 pi e terms cancelling
  (tests/unit/test_information.py checks it against ent_g on every subset).
- Multiplets: the neurons are grouped into k clusters by Ward's hierarchical clustering of their activation vectors
  (as theirs: AgglomerativeClustering(linkage="ward") on the neurons; here Lance-Williams in torch, the same
  criterion and partition as scipy's linkage); every
  union of 2..k clusters is a multiplet. `o_information_synergy` is the most negative Omega over them,
  `o_information_redundancy` the largest, `o_information` that of the whole layer. Theirs takes k = 10 (1,013
  multiplets); the default here is 5 (26) to keep an evaluation to seconds; measures.o_information.clusters sets it.
- A multiplet whose covariance is singular (neurons whose ranks coincide: dead ReLUs, whose ties the copula breaks
  alike) has no Omega (NaN; their Cholesky fails there too); synergy and redundancy are taken over the others.
Clustering is per run (its merges are sequential); the Omegas are a Cholesky per multiplet.
"""

from __future__ import annotations

import itertools
import math

import torch

from groklab.measures.probe import Probe
from groklab.measures.registry import register

LN2 = math.log(2.0)


def copula_normal(x: torch.Tensor) -> torch.Tensor:
    """Each column of x (run, n, N) as standard normal values in the same order: ndtri((rank + 1) / (n + 1)).

    >>> copula_normal(torch.tensor([[[10.0], [-3.0], [0.5]]]))[0, :, 0]  # ranks 2, 0, 1 of 3
    tensor([ 0.6745, -0.6745,  0.0000])
    """
    ranks = x.argsort(dim=1).argsort(dim=1).to(x.dtype)
    return torch.special.ndtri((ranks + 1) / (x.shape[1] + 1))


def bias(d: int, n: int) -> float:
    """ent_g's bias correction of a d-dimensional Gaussian entropy from n samples, in nats (added to the plug-in
    estimate): -d (ln 2 - ln(n - 1)) / 2 - sum_{i=1..d} psi((n - i) / 2) / 2."""
    psi = torch.special.digamma(torch.tensor([(n - i) / 2 for i in range(1, d + 1)], dtype=torch.float64))
    return float(-d * (LN2 - math.log(n - 1)) / 2 - psi.sum() / 2)


def o_information(C: torch.Tensor, n: int) -> torch.Tensor:
    """Omega in bits (...,) of covariances C (..., m, m) estimated from n samples, bias-corrected as ent_g.

    Three independent variables share nothing (0); three copies of one are redundant (> 0):

    >>> independent = torch.eye(3, dtype=torch.float64)
    >>> copies = 0.99 * torch.ones(3, 3, dtype=torch.float64) + 0.01 * torch.eye(3, dtype=torch.float64)
    >>> o_information(torch.stack([independent, copies]), n=10**9).round(decimals=3)
    tensor([0.0000, 2.6200], dtype=torch.float64)
    """
    m = C.shape[-1]
    L, info = torch.linalg.cholesky_ex(C)  # singular: neurons with the same ranks (dead ReLUs, say): no Omega
    L = torch.where((info == 0)[..., None, None], L, torch.eye(m, dtype=C.dtype, device=C.device))
    log_det = 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    inverse_diagonal = torch.cholesky_inverse(L).diagonal(dim1=-2, dim2=-1)
    plug_in = -log_det + 0.5 * (C.diagonal(dim1=-2, dim2=-1).log() - inverse_diagonal.log()).sum(-1)
    corrected = plug_in + (m - 2) * bias(m, n) + m * bias(1, n) - m * bias(m - 1, n)
    return torch.where(info == 0, corrected / LN2, math.nan)


def ward_clusters(features: torch.Tensor, k: int) -> list[list[int]]:
    """Neurons (columns of features (n, N)) in k clusters by Ward's criterion on their activation vectors, merged
    until k remain: the partition scipy's linkage(method="ward") cut by fcluster(maxclust=k) gives (Ward's linkage
    is monotone, so stopping at k clusters is that cut; tests/unit/test_information.py compares them).

    Lance-Williams on squared distances: merging s and t into u, D(u, v) = ((n_v + n_s) D(v, s) + (n_v + n_t)
    D(v, t) - n_v D(s, t)) / (n_s + n_t + n_v), each merge the pair of least D, as Ward's least increase of the
    within-cluster variance.
    """
    X = features.T.double()
    squared = (X * X).sum(1)
    D = (squared[:, None] + squared[None, :] - 2 * X @ X.T).clamp(min=0)
    N = D.shape[0]
    D.fill_diagonal_(math.inf)
    sizes = torch.ones(N, dtype=torch.float64)
    members: list[list[int] | None] = [[j] for j in range(N)]
    for _ in range(N - k):
        s, t = sorted(divmod(int(D.argmin()), N))
        n_s, n_t = sizes[s], sizes[t]
        D[s] = ((sizes + n_s) * D[s] + (sizes + n_t) * D[t] - sizes * D[s, t]) / (sizes + n_s + n_t)
        D[:, s] = D[s]
        D[s, s] = math.inf
        D[t], D[:, t] = math.inf, math.inf
        sizes[s] = n_s + n_t
        members[s] = members[s] + members[t]  # type: ignore[operator]
        members[t] = None
    return sorted(sorted(m) for m in members if m is not None)


@register(
    "o_information",
    "O-information of the first hidden layer's neurons: redundancy (> 0) or synergy (< 0), over Ward clusters",
    "Omega(S) = (m - 2) H(S) + sum_j [H(X_j) - H(S \\ j)], Gaussian-copula entropies with ent_g's bias correction, "
    "bits; o_information_synergy / _redundancy: the least / largest Omega over every union of 2..k Ward clusters of "
    "the neurons (k = measures.o_information.clusters); o_information: the whole layer",
    "Clauw, Marinazzo, Stramaglia 2024 (ICML 2025); kclauw/grokking-oinformation-icml; Rosas et al. 2019",
    default=False,
    needs=("neurons",),
)
def o_information_measure(probe: Probe) -> dict[str, torch.Tensor]:
    hook = probe.model.feature_hooks[0]
    features = probe.activations([hook], probe.stacked["x_train"])[hook].flatten(2).double()  # (run, n, N)
    n = features.shape[1]
    centered = copula_normal(features)
    centered = centered - centered.mean(dim=1, keepdim=True)  # ent_g demeans (the copula's values nearly are)
    covariance = centered.mT @ centered / (n - 1)  # (run, N, N)
    k = probe.options.o_information.clusters
    synergy, redundancy = [], []
    for run in range(features.shape[0]):  # the clusters differ per run, so do the multiplets' sizes
        clusters = ward_clusters(features[run], k)
        omegas = []
        for size in range(2, len(clusters) + 1):
            for chosen in itertools.combinations(clusters, size):
                neurons = torch.tensor(sorted(itertools.chain(*chosen)), device=covariance.device)
                omegas.append(o_information(covariance[run][neurons][:, neurons], n))
        finite = torch.stack(omegas)[torch.stack(omegas).isfinite()] if omegas else torch.zeros(0)
        synergy.append(finite.min() if len(finite) else torch.tensor(math.nan, dtype=torch.float64))
        redundancy.append(finite.max() if len(finite) else torch.tensor(math.nan, dtype=torch.float64))
    dtype = next(iter(probe.params.values())).dtype
    return {
        "o_information": o_information(covariance, n).to(dtype),
        "o_information_synergy": torch.stack(synergy).to(dtype),
        "o_information_redundancy": torch.stack(redundancy).to(dtype),
    }
