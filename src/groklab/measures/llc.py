"""The local learning coefficient (Lau et al. 2023; Watanabe's singular learning theory), estimated as devinterp
estimates it: SGLD chains localized at the current weights w*, at inverse temperature n beta, on the training
loss L_n (cross-entropy),

    llc = n beta (E_w[L_n(w)] - L_n(w*)),   w ~ exp(-n beta L_n(w) - gamma/2 |w - w*|^2)   (SGLD draws)

A larger llc is a more complex (less degenerate) solution: devinterp's grokking example sees it rise while a
network memorizes and fall as it groks. One chain per run and evaluation on the run's own module
(models/reference.py), with devinterp's SGLD and the defaults of its grokking example (measures.llc_*); the
chain's noise comes from a seed derived from the run's seed and the step, and the global RNG is left as it was.
The `llc` extra: devinterp 1.x (devinterp 2 samples language models from Hugging Face datasets instead).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from groklab.config import RunConfig
from groklab.measures.probe import Probe
from groklab.measures.registry import register
from groklab.models import reference_model
from groklab.seeds import derive_seed


@contextmanager
def _global_rngs_kept() -> Iterator[None]:
    """torch's, numpy's and Python's global generators as they were: devinterp seeds all three."""
    python, numpy = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)


def _classifies(config: RunConfig) -> bool:
    return config.loss_kind != "regression" and config.train.loss == "cross_entropy"


@register(
    "llc",
    "local learning coefficient of the training loss at the current weights (devinterp's SGLD estimator)",
    "llc = n beta (mean L_n over SGLD draws localized at w* - L_n(w*)); cross-entropy on the training set",
    "Lau et al. 2023 (the LLC); devinterp's grokking example (the estimator and its defaults)",
    applies=_classifies,
    default=False,
    requires=("devinterp", "llc"),
)
def llc(probe: Probe) -> dict[str, torch.Tensor]:
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from devinterp.utils import evaluate_ce

    options, values = probe.options, []
    for run, config in enumerate(probe.configs):
        seed = derive_seed(config.seed, "llc", probe.step) % 2**31  # devinterp seeds numpy too (32 bits)
        x, y = probe.stacked["x_train"][run], probe.stacked["y_train"][run]
        if "train_kept" in probe.stacked:  # a shrunk training set (task.on_generalized): the examples it keeps
            kept = probe.stacked["train_kept"][run].bool()
            x, y = x[kept], y[kept]
        data = TensorDataset(x, y)
        loader = DataLoader(data, batch_size=options.llc.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))  # fmt: skip
        with _global_rngs_kept(), torch.enable_grad(), warnings.catch_warnings():
            module = reference_model(probe.model, probe.params, run, probe.buffers)  # its layers draw an init
            # devinterp warns at every call (batches cycled, seeded runs, nbeta defaults): it says nothing of this run
            warnings.filterwarnings("ignore", category=UserWarning, module="devinterp")
            summary = estimate_learning_coeff_with_summary(
                module,
                loader=loader,
                evaluate=evaluate_ce,
                sampling_method=SGLD,
                optimizer_kwargs={"lr": options.llc.lr, "nbeta": options.llc.nbeta, "localization": options.llc.gamma},
                num_chains=1,
                num_draws=options.llc.draws,
                seed=seed,
                device=probe.device,
                online=False,
                verbose=False,
            )
        values.append(float(summary["llc/mean"]))
    return {"llc": torch.tensor(values, dtype=next(iter(probe.params.values())).dtype)}
