"""Fourier analysis over Z_p: spectra, inverse participation ratio, Gini, restricted and excluded losses.

Conventions. A function f on Z_p (a vector of p values) has the real Fourier series
    f(n) = c_0 + sum_k [c_k cos(w_k n) + s_k sin(w_k n)],   w_k = 2 pi k / p,   k = 1 .. floor(p/2).
Its *power at frequency k* is P_k = (p/2) (c_k^2 + s_k^2): the cos and sin parts together, normalized
so that sum_k P_k = sum_n (f(n) - mean f)^2 (Parseval). The constant (k = 0) carries no information
about n and is excluded throughout.
"""

from __future__ import annotations

import math

import torch

from groklab.losses import per_run_loss


def power_spectrum(f: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Power P_k of f at frequencies k = 1 .. floor(p/2) along `dim` (moved to the last axis).

    Normalized so that sum_k P_k equals the sum of squares of f minus its mean (Parseval).

    >>> n = torch.arange(7, dtype=torch.float64)
    >>> power_spectrum(torch.cos(2 * math.pi * 2 * n / 7)).round(decimals=6).tolist()
    [0.0, 3.5, 0.0]
    """
    f = f.movedim(dim, -1)
    p = f.shape[-1]
    coefficients = torch.fft.rfft(f, dim=-1)[..., 1:]  # k = 1 .. floor(p/2)
    power = coefficients.abs().square() * (2.0 / p)
    if p % 2 == 0:  # the Nyquist frequency has no sin part and no mirror image
        power[..., -1] /= 2
    return power


def ipr(power: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Inverse participation ratio of a power spectrum: sum_k P_k^2 / (sum_k P_k)^2 (Gromov 2023; Doshi et al.).

    1 when all power sits at one frequency, 1/K when spread evenly over K frequencies.

    >>> ipr(torch.tensor([0.0, 2.0, 0.0])).item(), ipr(torch.ones(4)).item()
    (1.0, 0.25)
    """
    total = power.sum(dim)
    return power.square().sum(dim) / total.square().clamp_min(torch.finfo(power.dtype).tiny)


def gini(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Gini coefficient of non-negative values: 0 when all are equal, (n-1)/n when one holds everything.

    G = sum_i (2i - n - 1) x_(i) / (n sum_i x_i), x_(i) sorted ascending, i = 1..n (Nanda et al. 2023 use
    it to measure the sparsity of Fourier norms).

    >>> gini(torch.ones(5)).item(), gini(torch.tensor([0.0, 0.0, 0.0, 4.0])).item()
    (0.0, 0.75)
    """
    x = values.movedim(dim, -1).sort(dim=-1).values
    n = x.shape[-1]
    rank = torch.arange(1, n + 1, dtype=x.dtype, device=x.device)
    return ((2 * rank - n - 1) * x).sum(-1) / (n * x.sum(-1)).clamp_min(torch.finfo(x.dtype).tiny)


# -- logits as functions of a +- b ------------------------------------------------------------------


def sum_index(pairs: torch.Tensor, p: int, sign: int) -> torch.Tensor:
    """(a + sign * b) mod p for pairs (n, 2)."""
    return (pairs[:, 0] + sign * pairs[:, 1]) % p


def logit_components(logits: torch.Tensor, s: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Projections of logits over the full p x p table onto cos(w_k s) and sin(w_k s), s = a +- b.

    logits (run, p*p, C) in any order of the pairs, s (p*p,) their a +- b. Returns the unit-norm
    coefficients (cos, sin), each (run, floor(p/2), C): the coordinates of each logit's p*p-vector
    along the normalized directions cos(w_k s(a, b)) and sin(w_k s(a, b)). These directions are
    orthogonal, and each has squared norm p^2/2 over the table (p^2 at the Nyquist frequency).
    """
    runs, _, classes = logits.shape
    by_sum = torch.zeros(runs, p, classes, dtype=logits.dtype, device=logits.device)
    by_sum.index_add_(1, s, logits)  # (run, p, C): sum of the logits over pairs with a +- b = s
    k = torch.arange(1, p // 2 + 1, dtype=logits.dtype, device=logits.device)
    angle = 2 * math.pi * k[:, None] * torch.arange(p, dtype=logits.dtype, device=logits.device)[None, :] / p
    norm = torch.full_like(k, math.sqrt(p * p / 2))
    if p % 2 == 0:
        norm[-1] = p
    cos = torch.einsum("ks,rsc->rkc", torch.cos(angle), by_sum) / norm[:, None]
    sin = torch.einsum("ks,rsc->rkc", torch.sin(angle), by_sum) / norm[:, None]
    return cos, sin


def key_component_logits(
    cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor, s: torch.Tensor, p: int
) -> torch.Tensor:
    """The part of the logits along cos/sin(w_k s) for the key frequencies only: (run, n, C).

    keys (run, n_keys) frequencies 1..floor(p/2) per run; s (run, n) the a +- b of the pairs wanted.
    """
    dtype, device = cos.dtype, cos.device
    norm = torch.full((p // 2,), math.sqrt(p * p / 2), dtype=dtype, device=device)
    if p % 2 == 0:
        norm[-1] = p
    index = (keys - 1)[:, :, None].expand(-1, -1, cos.shape[-1])
    c, d = cos.gather(1, index), sin.gather(1, index)  # (run, n_keys, C)
    angle = 2 * math.pi * keys[:, :, None].to(dtype) * s[:, None, :].to(dtype) / p  # (run, n_keys, n)
    scale = norm[keys - 1][:, :, None]
    basis_cos, basis_sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.einsum("rkn,rkc->rnc", basis_cos, c) + torch.einsum("rkn,rkc->rnc", basis_sin, d)


def restricted_excluded(
    table_logits: torch.Tensor,
    s: torch.Tensor,
    p: int,
    keys: torch.Tensor,
    train_rows: torch.Tensor,
    y_train: torch.Tensor,
    test_rows: torch.Tensor,
    y_test: torch.Tensor,
    loss: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nanda et al. 2023's restricted and excluded losses, (run,) each.

    restricted: the logits keep only their mean over the table and their components along
    cos/sin(w_k (a + b)) for the key frequencies k; the loss is evaluated on the test set.
    excluded: those key-frequency components are removed from the logits; evaluated on the training set.
    table_logits (run, p*p, C) over every pair; s (p*p,) a +- b; rows index the table per run (run, n).
    """
    cos, sin = logit_components(table_logits, s, p)
    restricted = table_logits.mean(dim=1, keepdim=True) + key_component_logits(cos, sin, keys, s[test_rows], p)
    excluded = _rows(table_logits, train_rows) - key_component_logits(cos, sin, keys, s[train_rows], p)
    return per_run_loss(restricted, y_test, loss), per_run_loss(excluded, y_train, loss)


def _rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """table (run, n, C) at rows (run, m) -> (run, m, C)."""
    return table.gather(1, rows[:, :, None].expand(-1, -1, table.shape[-1]))
