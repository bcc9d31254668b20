"""What a Recursive Feature Machine's feature matrix learned (Mallinar et al. 2025): on modular addition M becomes
block-circulant, the Fourier algorithm again, without a network.

M (2p, 2p) over the one-hot inputs (a, b) has blocks M_aa, M_ab, M_ba, M_bb (p, p). A p x p block B is circulant when
B_ij depends on (j - i) mod p alone; its circulant part averages B over each such diagonal. The circulant share of a
block is the fraction of its variance (about its mean) that part carries: 1 for a circulant block, ~1/p for noise.
The diagonal blocks' own diagonals are left out (M = I is circulant there and says nothing; their code plots M with
its diagonal removed for the same reason), and so is each block's mean (a constant is circulant too). A residue
ordering is assumed: the share applies to addition and subtraction, where the Fourier basis is that of Z_p.
"""

from __future__ import annotations

import torch

from groklab.config import RunConfig
from groklab.measures.probe import Probe, is_modular
from groklab.measures.registry import register


def circulant_share(B: torch.Tensor, skip_diagonal: bool) -> torch.Tensor:
    """(run,) share of the variance of blocks B (run, p, p) in their circulant part, diagonals left out if asked.

    >>> p = 5; offsets = (torch.arange(p)[None, :] - torch.arange(p)[:, None]) % p
    >>> circulant = torch.tensor([3.0, 1.0, -2.0, 0.5, 4.0])[offsets]  # B_ij = c[(j - i) mod p]
    >>> circulant_share(circulant[None], False), circulant_share(torch.eye(p)[None] * 7 + circulant, True)
    (tensor([1.]), tensor([1.]))
    >>> circulant_share(torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]), False)  # one entry
    tensor([0.2500])
    """
    p = B.shape[-1]
    offset = (torch.arange(p, device=B.device)[None, :] - torch.arange(p, device=B.device)[:, None]) % p
    keep = offset != 0 if skip_diagonal else torch.ones_like(offset, dtype=torch.bool)
    values, diagonals = B[:, keep], offset[keep]  # (run, m), (m,)
    centered = values - values.mean(dim=1, keepdim=True)
    counts = torch.bincount(diagonals, minlength=p).to(B.dtype)
    sums = torch.zeros(B.shape[0], p, dtype=B.dtype, device=B.device).index_add_(1, diagonals, centered)
    part = (sums / counts.clamp(min=1))[:, diagonals]  # each entry replaced by its diagonal's mean
    return part.square().sum(dim=1) / centered.square().sum(dim=1)


def _applies(config: RunConfig) -> bool:
    """a kernel machine on modular addition or subtraction"""
    return config.model.name == "rfm" and is_modular(config) and config.task.operation in ("add", "sub")  # type: ignore[union-attr]


@register(
    "feature_circulant",
    "how circulant the kernel machine's feature matrix M is, block by block (Mallinar et al.'s block-circulant AGOP)",
    "circulant_share.<ab|aa|bb> = |circ(B)|^2 / |B|^2 of each block of M (mean removed, the diagonal blocks' "
    "diagonals left out), circ(B)_ij the mean of B over the diagonal (j - i) mod p; circulant_share: pooled over "
    "the four blocks",
    "Mallinar et al. 2025 (Emergence in non-neural models), Sec. 4",
    applies=_applies,
)
def feature_circulant(probe: Probe) -> dict[str, torch.Tensor]:
    p, M = probe.config.task.modulus, probe.params["M"]  # type: ignore[union-attr]
    blocks = {"aa": (M[:, :p, :p], True), "ab": (M[:, :p, p:], False), "ba": (M[:, p:, :p], False),
              "bb": (M[:, p:, p:], True)}  # fmt: skip
    shares = {name: circulant_share(B, diagonal) for name, (B, diagonal) in blocks.items()}
    weights = {name: _variance(B, diagonal) for name, (B, diagonal) in blocks.items()}
    pooled = sum(shares[n] * weights[n] for n in blocks) / sum(weights.values())
    out = {f"circulant_share.{name}": shares[name] for name in ("aa", "ab", "bb")}
    out["circulant_share"] = pooled  # type: ignore[assignment]
    return out


def _variance(B: torch.Tensor, skip_diagonal: bool) -> torch.Tensor:
    """The summed squares about the mean of the entries circulant_share weighs (run,)."""
    values = B[:, ~torch.eye(B.shape[-1], dtype=torch.bool, device=B.device)] if skip_diagonal else B.flatten(1)
    return (values - values.mean(dim=1, keepdim=True)).square().sum(dim=1)
