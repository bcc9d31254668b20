"""Measures of what the network computes on its data: label corruption, RQI, parity clusters, stored
representations."""

from __future__ import annotations

import torch

from groklab.measures.probe import Probe, is_additive, is_noisy, is_parity
from groklab.measures.registry import register


@register(
    "corruption_accuracy",
    "train accuracy on clean and on corrupted examples (w.r.t. given and true labels)",
    "clean_acc = acc on uncorrupted train examples; corrupted_acc = fraction of corrupted examples predicted "
    "as their (wrong) training label (memorization); corrupted_true_acc = ... as their true label (inversion)",
    "Doshi et al. 2023 (coexistence, partial and full inversion, forgetting)",
    default=is_noisy,
)
def corruption_accuracy(probe: Probe) -> dict[str, torch.Tensor]:
    predicted = probe.train_logits.argmax(dim=-1)  # (run, n)
    corrupted = torch.stack([d.corrupted for d in probe.data]).to(probe.device)
    clean_labels = torch.stack([d.y_train_clean for d in probe.data]).to(probe.device)
    given = probe.stacked["y_train"]
    dtype = next(iter(probe.params.values())).dtype

    def mean_over(mask: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
        count = mask.sum(1).to(dtype)
        return torch.where(count > 0, (hits & mask).sum(1).to(dtype) / count.clamp_min(1), torch.nan)  # NaN: none

    return {
        "clean_acc": mean_over(~corrupted, predicted == given),
        "corrupted_acc": mean_over(corrupted, predicted == given),
        "corrupted_true_acc": mean_over(corrupted, predicted == clean_labels),
    }


@register(
    "rqi",
    "representation quality index adapted to modular arithmetic: fraction of training parallelograms a+b=c+d "
    "(mod p) the operand embeddings preserve",
    "|{(i,j,m,n): (i,j),(m,n) in train, i+j = m+n (mod p), |E_i + E'_j - E_m - E'_n| <= delta rms(E)}| / "
    "|{same without the norm condition}|, (i,j) != (m,n). Not the paper's RQI (that is liu_rqi of "
    "effective_theory: every parallelogram of the integers, E standardized, mean square < 0.01)",
    "adapted from Liu et al. 2022 (effective theory of representation learning)",
    applies=is_additive,
    default=False,
    needs=("embedding",),
)
def rqi(probe: Probe) -> dict[str, torch.Tensor]:
    task = probe.config.task
    p, sign = task.modulus, (1 if task.operation == "add" else -1)  # type: ignore[union-attr]
    E_a, E_b = probe.operand_embeddings()  # (run, p, d)
    scale = torch.cat([E_a, E_b], dim=1).square().mean(dim=(1, 2)).sqrt().clamp_min(1e-30) * E_a.shape[-1] ** 0.5
    train_rows, _ = probe.table_rows
    values = []
    for r in range(probe.runs):  # per run: each has its own training pairs
        pairs = probe.table_pairs[train_rows[r]]
        sums = E_a[r, pairs[:, 0]] + E_b[r, pairs[:, 1]]  # (n, d): E_i + E'_j for each training pair
        s = (pairs[:, 0] + sign * pairs[:, 1]) % p
        kept = total = 0
        for value in range(p):
            group = sums[s == value]
            if len(group) < 2:
                continue
            close = torch.cdist(group, group) <= probe.options.rqi.delta * scale[r]
            kept += int(close.sum()) - len(group)  # drop the (i,j) == (m,n) diagonal
            total += len(group) * (len(group) - 1)
        values.append(kept / total if total else float("nan"))
    return {"rqi": torch.tensor(values, dtype=E_a.dtype, device=E_a.device)}


@register(
    "parity_clustering",
    "how much of the readout representation's variance the k relevant bits explain (0..1)",
    "eta^2 = between-group sum of squares / total sum of squares of the test representations, grouped "
    "by the 2^k values of the relevant coordinates",
    "seed 001 (t-SNE clusters by the relevant bits, made a number); Barak et al. 2022",
    applies=is_parity,
)
def parity_clustering(probe: Probe) -> dict[str, torch.Tensor]:
    x = probe.stacked["x_test"]  # (run, n, n_bits) in {-1, 1}
    h = probe.representations(x)  # (run, n, d)
    coordinates = [torch.as_tensor(d.info["coordinates"]) for d in probe.data]
    bits = torch.stack([(x[r][:, c] > 0).long() for r, c in enumerate(coordinates)])  # (run, n, k)
    group = (bits * (2 ** torch.arange(bits.shape[-1], device=bits.device))).sum(-1)  # (run, n)
    n_groups = 2 ** bits.shape[-1]
    one_hot = torch.nn.functional.one_hot(group, n_groups).to(h.dtype)  # (run, n, G)
    counts = one_hot.sum(1).clamp_min(1)  # (run, G)
    means = one_hot.transpose(1, 2) @ h / counts[:, :, None]  # (run, G, d)
    centered_total = (h - h.mean(1, keepdim=True)).square().sum(dim=(1, 2))
    between = (one_hot.sum(1)[:, :, None] * (means - h.mean(1, keepdim=True)).square()).sum(dim=(1, 2))
    return {"parity_clustering": between / centered_total.clamp_min(1e-30)}


@register(
    "representations",
    "hidden representations of the first representations.inputs test inputs, and a sample of the first "
    "layer's weights, at representations.steps",
    "representations: the readout's input (the MLP's last hidden layer, the transformer's residual stream "
    "at '='); weight_sample: up to 4096 fixed entries of the first hidden layer's incoming weights",
    "seed 001 (t-SNE, Fig. 2; KDE of weights, Fig. 3); seed 003 (PCA of embeddings)",
    when="representation",
    applies=lambda config: bool(config.measures.representations.steps),
    needs=("neurons",),
)
def representations(probe: Probe) -> dict[str, torch.Tensor]:
    n = probe.options.representations.inputs
    weights = probe.neuron_weights()[0].flatten(1)  # (run, N * fan_in)
    chosen = torch.randperm(weights.shape[1], generator=torch.Generator().manual_seed(0))[:4096]
    return {
        "representations": probe.representations(probe.stacked["x_test"][:, :n]),  # (run, n, d)
        "weight_sample": weights[:, chosen.to(weights.device)],  # (run, m): the same entries at every step
    }
