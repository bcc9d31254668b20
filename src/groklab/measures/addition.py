"""Liu et al. 2022's measures of addition-toy runs (formulas in measures/liu.py): the representation's
parallelograms (RQI), the accuracy they predict, the effective loss, and what the training set allows.

They read the learned representation E = W_E (run, p, reprs_dim) of a model whose decoder sees E_a + E_b
(task addition, model.embedding summed) and each run's training pairs (data.info["train_index"]).
"""

from __future__ import annotations

import numpy as np
import torch

from groklab.config import AdditionTask, RunConfig
from groklab.measures import liu
from groklab.measures.probe import Probe
from groklab.measures.registry import register


def is_liu_toy(config: RunConfig) -> bool:
    """Liu et al.'s toy: the addition task through a summed embedding, so the decoder reads E_a + E_b."""
    return isinstance(config.task, AdditionTask) and config.model.name == "mlp" and config.model.embedding == "summed"


def _per_run(probe: Probe) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(p, training pair indices, E as float64 (p, d)) of each run of the probe."""
    p = probe.config.task.operands  # type: ignore[union-attr]
    E = probe.params["W_E"].detach().double().cpu().numpy()
    return [(p, np.asarray(probe.data[r].info["train_index"]), E[r]) for r in range(probe.runs)]


@register(
    "effective_theory",
    "Liu et al.'s representation measures: RQI, the test accuracy the representation predicts, the effective loss",
    "liu_rqi = fraction of the parallelograms i + n = j + m (i < j <= m < n) with mean_d (S_i + S_n - S_j - S_m)^2 "
    "< 0.01, S = E standardized per dimension; predicted_acc = (|Dbar(D, P(E))| - |D|) / |test|, P(E) the "
    "parallelograms holding in E; effective_loss = sum over P0(D) of |E_i + E_j - E_m - E_n|^2 / sum_k |E_k|^2",
    "Liu et al. 2022 (Sec. 3-4, Figs. 3-4; toy/train_add.py)",
    applies=is_liu_toy,
)
def effective_theory(probe: Probe) -> dict[str, torch.Tensor]:
    columns: dict[str, list[float]] = {"liu_rqi": [], "predicted_acc": [], "effective_loss": []}
    for p, train, E in _per_run(probe):
        P0, A = liu.parallelograms(p)
        in_train = np.isin(P0, train).all(axis=1)  # P0(D): both examples of the parallelogram in D
        columns["liu_rqi"].append(liu.rqi(E))
        columns["predicted_acc"].append(liu.predicted_accuracy(p, train, E))
        columns["effective_loss"].append(liu.effective_loss(E, A[in_train]) if in_train.any() else float("nan"))
    return {name: torch.tensor(values, dtype=torch.float64) for name, values in columns.items()}


@register(
    "training_set_theory",
    "what a run's training set allows (Liu et al.): the ideal test accuracy Acc-bar and the representation's "
    "degrees of freedom",
    "ideal_acc = (|Dbar(D)| - |D|) / |test| with P(D) the parallelograms P0(D) implies; representation_dof = "
    "dim null(A_P0(D)) - 2 (0: the linear representation is the only one)",
    "Liu et al. 2022 (Sec. 3, Fig. 3's upper bound; toy/train_add.py's acc_ideal_test and dof)",
    when="final",
    applies=is_liu_toy,
)
def training_set_theory(probe: Probe) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for p, train, _ in _per_run(probe):
        _, null_dim = liu.implied(p, train)
        rows.append({"ideal_acc": liu.ideal_accuracy(p, train), "representation_dof": float(null_dim - 2)})
    return rows
