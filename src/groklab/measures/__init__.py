"""Progress measures: every quantity the grokking literature tracks, registered by name.

    probe.py           what measures read (parameters, model, data; full-table logits, neurons)
    registry.py        Measure, MEASURES, register, selected
    weights.py         norms, last-layer norm, spectral norms, sparsity, large neurons, distance from init
    fourier.py         spectra over Z_p, IPR, Gini, restricted/excluded losses (formulas)
    modular.py         the Fourier measures of modular runs; IPR-ordered neuron pruning
    representation.py  label-corruption accuracies, RQI, parity clustering, stored representations
    liu.py             Liu et al.'s effective theory: parallelograms, Acc-bar, RQI, effective loss (formulas)
    addition.py        the effective-theory measures of addition-toy runs
    analytic.py        Gromov's analytic solution and the comparison of trained weights with it
    collapse.py        Prieto et al.'s softmax collapse: one-hot softmax, zero loss terms, logit norm
    efficiency.py      Varma et al.'s circuit efficiency: logit scale per parameter norm
    kernel.py          the empirical NTK: alignment with the target, change from init (lazy -> rich)
    pizza.py           Zhong et al.'s clock or pizza: distance irrelevance, gradient symmetricity, circularity
    spectra.py         ranks and entropies of weight and feature spectra: effective rank, spectral entropy, feature rank
    rfm.py             a kernel machine's feature matrix: its block-circulant share (Mallinar et al.)
    information.py     O-information of the hidden neurons: redundancy or synergy (Gaussian copula, Ward clusters)
    htsr.py            heavy tails: each weight matrix's power-law alpha and correlation traps (WeightWatcher's)
    curve_events.py    events read off the curves: test-loss peak, delay, slingshots, Nanda's phases

`groklab measures` lists them; `measures.names` in a spec selects them.
"""

from groklab.measures import (  # noqa: F401  (registers measures)
    addition,
    analytic,
    collapse,
    efficiency,
    htsr,
    information,
    kernel,
    llc,
    modular,
    pizza,
    representation,
    rfm,
    spectra,
    weights,
)
from groklab.measures.analytic import analytic_accuracy, gromov_solution
from groklab.measures.curve_events import run_events
from groklab.measures.probe import Probe
from groklab.measures.registry import MEASURES, Measure, register, selected

__all__ = [
    "MEASURES",
    "Measure",
    "Probe",
    "analytic_accuracy",
    "gromov_solution",
    "register",
    "run_events",
    "selected",
]
