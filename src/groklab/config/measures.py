"""Which progress measures a run computes, and their settings (`groklab measures` lists them)."""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from groklab.config.base import STRICT, Spec


class SparsityOptions(Spec):
    """measures.weight_sparsity."""

    model_config = STRICT
    threshold: float = Field(1e-3, gt=0.0)
    """weight_sparsity counts weights with |w| below this value."""


class LargeNeuronsOptions(Spec):
    """measures.large_neurons."""

    model_config = STRICT
    fraction: float = Field(0.1, gt=0.0, le=1.0)
    """large_neurons counts hidden neurons whose weight norm is at least this fraction of the largest."""


class RestrictedExcludedOptions(Spec):
    """measures.restricted_excluded."""

    model_config = STRICT
    key_frequencies: list[int] = []
    """Key frequencies k of the restricted/excluded losses (Nanda et al.). Empty: at each evaluation the
    n_key_frequencies frequencies carrying most of the logits' power along cos/sin(w_k(a+b)). The paper
    fixes the final model's key frequencies for every step: rerun with the list it reports."""
    n_key_frequencies: int = Field(5, ge=1)
    """How many key frequencies to pick when key_frequencies is empty (Nanda et al. find ~5 for p=113)."""

    @field_validator("key_frequencies")
    @classmethod
    def _frequencies(cls, frequencies: list[int]) -> list[int]:
        if any(k < 1 for k in frequencies):
            raise ValueError(f"key_frequencies: {frequencies} must be frequencies >= 1")
        return frequencies


class RQIOptions(Spec):
    """measures.rqi."""

    model_config = STRICT
    delta: float = Field(0.01, gt=0.0)
    """RQI tolerance: a parallelogram counts when |E_i + E_j - E_m - E_n| <= delta x RMS embedding norm."""


class RepresentationsOptions(Spec):
    """measures.representations."""

    model_config = STRICT
    steps: list[int] = []
    """Steps at which hidden representations of the first `inputs` test inputs are stored (t-SNE / PCA panels);
    these steps are added to the evaluation schedule."""
    inputs: int = Field(256, ge=1)
    """Number of test inputs whose representations are stored."""


class NTKOptions(Spec):
    """measures.ntk."""

    model_config = STRICT
    examples: int = Field(128, ge=2)
    """The empirical kernel is taken on the first this many training examples (its cost grows with their square
    times the parameter count)."""


class LLCOptions(Spec):
    """measures.llc: devinterp's SGLD estimate, with the defaults of its grokking example."""

    model_config = STRICT
    lr: float = Field(3e-3, gt=0.0)
    """The SGLD step size epsilon (devinterp's grokking example: 3e-3)."""
    nbeta: float = Field(2.0, gt=0.0)
    """The inverse temperature n beta (example: 2)."""
    gamma: float = Field(5.0, ge=0.0)
    """The localization gamma: how strongly the chain is pulled back to the weights (example: 5)."""
    draws: int = Field(500, ge=1)
    """SGLD draws of the one chain per run and evaluation (example: 500)."""
    batch_size: int = Field(128, ge=1)
    """Training examples per SGLD step (example: 128)."""


class PruningOptions(Spec):
    """measures.ipr_pruning."""

    model_config = STRICT
    points: int = Field(21, ge=2)
    """Points on the neuron-pruning curve (0 .. all neurons pruned, in order of increasing IPR)."""


class OInformationOptions(Spec):
    """o_information's multiplets (measures/information.py)."""

    model_config = STRICT
    clusters: int = Field(5, ge=2, le=12)
    """k: the neurons' Ward clusters; every union of 2..k of them is a multiplet (2^k - k - 1 of them; Clauw et
    al. take 10)."""


class MeasuresConfig(Spec):
    """Progress measures, computed on the evaluation schedule (or once, after training) and stored; a measure's
    options under its name (measures.llc.lr)."""

    model_config = STRICT
    names: list[str] | str = "default"
    """'default' (every measure that applies to the task and model and is cheap at every evaluation),
    'all' (also the costly ones: spectral norms, RQI, neuron pruning curves, representations), 'none',
    or a list of measure names (see `groklab measures`), which may start with 'default' to add to the defaults
    ([default, effective_rank]); a listed measure that does not apply to the run's task or model is an error."""
    every: int = Field(1, ge=1)
    """Compute the per-evaluation measures at every n-th evaluation only (cost control)."""
    snapshot_steps: list[int] | int = []
    """Steps at which each run's weights are stored (DIR/runs/ID/weights/step-STEP.safetensors), to analyse or
    measure later without retraining (`result.weights(run_id, step=...)`, `groklab measures DIR --recompute
    NAME`): a list of steps, or a count N for step 0 and N - 1 more, log-spaced up to train.steps. These steps
    are added to the evaluation schedule. The final weights are always stored."""
    weight_sparsity: SparsityOptions = Field(default_factory=SparsityOptions)
    large_neurons: LargeNeuronsOptions = Field(default_factory=LargeNeuronsOptions)
    restricted_excluded: RestrictedExcludedOptions = Field(default_factory=RestrictedExcludedOptions)
    rqi: RQIOptions = Field(default_factory=RQIOptions)
    representations: RepresentationsOptions = Field(default_factory=RepresentationsOptions)
    ntk: NTKOptions = Field(default_factory=NTKOptions)
    llc: LLCOptions = Field(default_factory=LLCOptions)
    ipr_pruning: PruningOptions = Field(default_factory=PruningOptions)
    o_information: OInformationOptions = Field(default_factory=OInformationOptions)

    @field_validator("names")
    @classmethod
    def _names(cls, names: list[str] | str) -> list[str] | str:
        if isinstance(names, str) and names not in ("default", "all", "none"):
            raise ValueError(f"measures.names: {names!r} must be default, all, none or a list of measure names")
        return names


OPTIONS: dict[str, type[Spec]] = {
    name: field.annotation
    for name, field in MeasuresConfig.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, Spec)
}
"""Measure name -> the class of its options (the spec reference lists each as a section: measures.llc)."""


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
