"""A model and a dataset the package provides, named in specs by import path (model.name module, task.name
function): a package adds them with no entry point at all; installing it is enough."""

from __future__ import annotations

import numpy as np
from torch import nn


def make_model(p: int, d: int = 16) -> nn.Module:
    """Operands a, b (floats from the arrays) -> logits over p: one-hot them through an embedding bag's sum."""
    return nn.Sequential(Tokens(), nn.Embedding(p, d), nn.Flatten(), nn.Linear(2 * d, 64), nn.ReLU(), nn.Linear(64, p))


class Tokens(nn.Module):
    def forward(self, x):  # type: ignore[no-untyped-def]
        return x.long()


def subtraction(seed: int, p: int) -> dict[str, np.ndarray]:
    """(a - b) mod p over every pair, the same for every seed (groklab splits it per seed)."""
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    return {"x": np.stack([a.ravel(), b.ravel()], axis=1), "y": (a - b).ravel() % p}
