"""Which progress measures a run computes, and their settings (`groklab measures` lists them)."""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from groklab.config.base import STRICT, Spec


class MeasuresConfig(Spec):
    """Progress measures, computed on the evaluation schedule (or once, after training) and stored."""

    model_config = STRICT
    names: list[str] | str = "default"
    """'default' (every measure that applies to the task and model and is cheap at every evaluation),
    'all' (also the costly ones: spectral norms, RQI, neuron pruning curves, representations), 'none',
    or a list of measure names (see `groklab measures`); a listed measure that does not apply to the
    run's task or model is an error."""
    every: int = Field(1, ge=1)
    """Compute the per-evaluation measures at every n-th evaluation only (cost control)."""
    sparsity_threshold: float = Field(1e-3, gt=0.0)
    """weight_sparsity counts weights with |w| below this value."""
    large_neuron_fraction: float = Field(0.1, gt=0.0, le=1.0)
    """large_neurons counts hidden neurons whose weight norm is at least this fraction of the largest."""
    key_frequencies: list[int] = []
    """Key frequencies k of the restricted/excluded losses (Nanda et al.). Empty: at each evaluation the
    n_key_frequencies frequencies carrying most of the logits' power along cos/sin(w_k(a+b)). The paper
    fixes the final model's key frequencies for every step: rerun with the list it reports."""
    n_key_frequencies: int = Field(5, ge=1)
    """How many key frequencies to pick when key_frequencies is empty (Nanda et al. find ~5 for p=113)."""
    rqi_delta: float = Field(0.01, gt=0.0)
    """RQI tolerance: a parallelogram counts when |E_i + E_j - E_m - E_n| <= delta x RMS embedding norm."""
    representation_steps: list[int] = []
    """Steps at which hidden representations of the first representation_inputs test inputs are stored
    (t-SNE / PCA panels); these steps are added to the evaluation schedule."""
    snapshot_steps: list[int] | int = []
    """Steps at which each run's weights are stored (DIR/runs/ID/weights/step-STEP.safetensors), to analyse or
    measure later without retraining (`result.weights(run_id, step=...)`, `groklab measures DIR --recompute
    NAME`): a list of steps, or a count N for step 0 and N - 1 more, log-spaced up to train.steps. These steps
    are added to the evaluation schedule. The final weights are always stored."""
    representation_inputs: int = Field(256, ge=1)
    """Number of test inputs whose representations are stored."""
    ntk_examples: int = Field(128, ge=2)
    """The ntk measure's empirical kernel is taken on the first this many training examples (its cost grows with
    their square times the parameter count)."""
    llc_lr: float = Field(3e-3, gt=0.0)
    """The llc measure's SGLD step size epsilon (devinterp's grokking example: 3e-3)."""
    llc_nbeta: float = Field(2.0, gt=0.0)
    """The llc measure's inverse temperature n beta (devinterp's grokking example: 2)."""
    llc_gamma: float = Field(5.0, ge=0.0)
    """The llc measure's localization gamma: how strongly the chain is pulled back to the weights (example: 5)."""
    llc_draws: int = Field(500, ge=1)
    """SGLD draws of the llc measure's one chain per run and evaluation (example: 500)."""
    llc_batch_size: int = Field(128, ge=1)
    """Training examples per SGLD step of the llc measure (example: 128)."""
    prune_points: int = Field(21, ge=2)
    """Points on the neuron-pruning curve (0 .. all neurons pruned, in order of increasing IPR)."""

    @field_validator("names")
    @classmethod
    def _names(cls, names: list[str] | str) -> list[str] | str:
        if isinstance(names, str) and names not in ("default", "all", "none"):
            raise ValueError(f"measures.names: {names!r} must be default, all, none or a list of measure names")
        return names

    @field_validator("key_frequencies")
    @classmethod
    def _frequencies(cls, frequencies: list[int]) -> list[int]:
        if any(k < 1 for k in frequencies):
            raise ValueError(f"measures.key_frequencies: {frequencies} must be frequencies >= 1")
        return frequencies


def snapshot_schedule(measures: MeasuresConfig, steps: int) -> list[int]:
    """The steps measures.snapshot_steps names: its list, or N steps from 0, log-spaced up to `steps`.

    >>> snapshot_schedule(MeasuresConfig(snapshot_steps=5), 1000)
    [0, 1, 10, 100, 1000]
    >>> snapshot_schedule(MeasuresConfig(snapshot_steps=[100, 0]), 1000)
    [0, 100]
    """
    wanted = measures.snapshot_steps
    if isinstance(wanted, list):
        return sorted(set(wanted))
    if wanted <= 1:
        return [0][:wanted]
    spaced = np.round(np.logspace(0, np.log10(max(steps, 1)), wanted - 1)).astype(int).tolist()
    return sorted({0, *spaced})
