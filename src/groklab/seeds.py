"""Seed derivation: every random stream of a run (split, noise, init, batches, sample, dropout, label templates,
the subset a shrinking training set keeps) from its seed."""

from __future__ import annotations

import numpy as np

PURPOSES = {"split": 1, "noise": 2, "init": 3, "batches": 4, "sample": 5, "dropout": 6, "templates": 7, "shrink": 8}
PURPOSES |= {"llc": 9}  # the llc measure's SGLD chains (one stream per step: derive_seed(seed, "llc", step))
PURPOSES |= {"traps": 10}  # correlation_traps' shuffles (one stream per step)


def derive_seed(seed: int, purpose: str, index: int = 0) -> int:
    """An independent 63-bit seed for one purpose of one run (split, noise, init, batches, sample, dropout), and
    for a purpose that draws afresh at each step, of one `index` (the step) of it.

    Separate streams mean, e.g., that changing label_noise leaves the split and the init unchanged.

    >>> derive_seed(0, "init") != derive_seed(0, "split") != derive_seed(1, "split")
    True
    """
    state = np.random.SeedSequence([seed, PURPOSES[purpose], *([index] if index else [])]).generate_state(
        2, dtype=np.uint32
    )
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


def rng_for(seed: int, purpose: str) -> np.random.Generator:
    """A numpy Generator for one purpose of one run."""
    return np.random.default_rng(derive_seed(seed, purpose))
