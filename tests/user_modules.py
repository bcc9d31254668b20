"""Modules a researcher might bring (model.name module), for the tests: written with torch.nn as one would write them
for one run, with nothing of groklab in them."""

from __future__ import annotations

import torch
from torch import nn


class GromovMLP(nn.Module):
    """Gromov 2023's network, as a user writes it: one-hots of a and b, W_in, x^2, W_out, no biases."""

    def __init__(self, p: int, width: int) -> None:
        super().__init__()
        self.p = p
        # The built-in MLP's gromov init, drawn first from the stream groklab seeds for the factory (nn.Linear's own
        # init would draw from it too): N(0, 0.25 / (2N)^(2/3)) for W_in (2p, N), then W_out (N, p), in float64.
        std = 0.25**0.5 / (2 * width) ** (1 / 3)
        W_in, W_out = (
            torch.randn(2 * p, width, dtype=torch.float64) * std,
            torch.randn(width, p, dtype=torch.float64) * std,
        )
        self.W_in = nn.Linear(2 * p, width, bias=False, dtype=torch.float64)
        self.W_out = nn.Linear(width, p, bias=False, dtype=torch.float64)
        with torch.no_grad():  # nn.Linear keeps its weight as (out, in)
            self.W_in.weight.copy_(W_in.T)
            self.W_out.weight.copy_(W_out.T)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:  # (batch, 2) -> (batch, p)
        one_hot = torch.cat([nn.functional.one_hot(pairs[:, 0], self.p), nn.functional.one_hot(pairs[:, 1], self.p)], 1)
        hidden = self.W_in(one_hot.to(self.W_in.weight.dtype))
        return self.W_out(hidden * hidden)


def gromov(p: int = 23, width: int = 64) -> nn.Module:
    return GromovMLP(p, width)


class Everything(nn.Module):
    """Token pairs through every layer kind whose training differs between runs: an nn.TransformerEncoderLayer
    (attention, LayerNorm, dropout), an nn.MultiheadAttention, BatchNorm (per-run statistics) and dropout."""

    def __init__(self, p: int = 11, d: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(p, d)
        self.encoder = nn.TransformerEncoderLayer(d, 2, 32, dropout=dropout, batch_first=True)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 32)
        self.bn = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(32, p)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:  # (batch, 2) -> (batch, p)
        h = self.encoder(self.embed(pairs))  # (batch, 2, d)
        h = self.ln(h + self.attn(h, h, h)[0])
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(h[:, -1])))))


def everything(p: int = 11, d: int = 16, dropout: float = 0.1) -> nn.Module:
    return Everything(p, d, dropout)


def regressor(d: int = 8) -> nn.Module:
    """Vectors -> one prediction each, shaped (batch,)."""
    return nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, 1), nn.Flatten(0))


class DataDependent(nn.Module):
    """A module that asks a tensor for a Python number: it cannot run under vmap."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(2, 11)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        scale = float(pairs.float().mean().item())
        return self.out(pairs.float()) * scale


def data_dependent() -> nn.Module:
    return DataDependent()


def raises() -> nn.Module:
    raise RuntimeError("out of coffee")


def not_a_module() -> int:
    return 3
