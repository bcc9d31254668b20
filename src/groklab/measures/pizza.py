"""Clock or pizza (Zhong et al. 2023, "The Clock and the Pizza"; fjzzq2002/pizza): which algorithm a transformer on
modular addition learned, read off two numbers.

Clock: the logit of the answer c is cos(w(a + b - c)), independent of a - b; its gradient in E_a and in E_b differ
(it multiplies the two embeddings). Pizza: the operands' embeddings are averaged first, E_a + E_b, and the logit of
the right answer scales as |cos(w(a - b)/2)|, so it depends on the distance a - b, and the gradients in E_a and E_b
are the same. Hence:

    distance irrelevance  q = mean_d std_s L(s, d) / std_{s, d} L(s, d)
        L(s, d): the logit of the right answer at the pair with a + b = s, a - b = d (mod p): near 1 for the clock,
        near 0 for the pizza (within a column of fixed d it hardly varies);
    gradient symmetricity  g = mean over pairs of cos(dL/dx_a, dL/dx_b)
        x_a, x_b: the embedded tokens of a and b (hook_embed at their positions): near 1 for the pizza;
    circularity  c = mean over the top 4 principal components u of W_E of max_k 2 |sum_t u_t e^{2 pi i k t / p}|^2 / p
        u: a component's scores over the p operand tokens, unit norm: the share of its variance in its strongest
        frequency, 1 when the embeddings lie on circles (both algorithms embed on circles; it says whether there
        is a Fourier algorithm to tell apart at all).

The training script computes q on the largest *wrong* logit (train-main.py sets the right one to -inf before its
topk), the paper and its notebook on the right one. These measures take the right answer's logit, as the paper defines
q, because the pizza's signature |cos(w d/2)| is in the right answer's logit, not in the runner-up's. Only the paper's
transformer (sequence "a b =" or "a op b =") on modular addition. Circularity is their notebook's (eval-main.ipynb,
"Circularity"): the same PCA (centered over tokens), components and normalization.
"""

from __future__ import annotations

import torch

from groklab.config import RunConfig
from groklab.measures.probe import Probe, is_modular
from groklab.measures.registry import register


def distance_irrelevance(table: torch.Tensor, pairs: torch.Tensor, p: int) -> torch.Tensor:
    """q (run,) of the right answer's logits `table` (run, n_pairs) at `pairs` (n_pairs, 2) covering Z_p x Z_p.

    >>> pairs = torch.cartesian_prod(torch.arange(5), torch.arange(5))
    >>> clock = torch.cos(2 * torch.pi * (pairs[:, 0] + pairs[:, 1]) / 5.0)[None]  # a function of s only
    >>> pizza = torch.cos(torch.pi * (pairs[:, 0] - pairs[:, 1]) / 5.0).abs()[None]  # of d only
    >>> distance_irrelevance(clock, pairs, 5).round(decimals=3), distance_irrelevance(pizza, pairs, 5).round(decimals=3)
    (tensor([1.]), tensor([0.]))
    """
    s = (pairs[:, 0] + pairs[:, 1]) % p
    d = (pairs[:, 0] - pairs[:, 1]) % p
    grid = table.new_zeros(table.shape[0], p, p)
    grid[:, s, d] = table  # rows: s = a + b, columns: d = a - b
    within = grid.std(dim=1, unbiased=False).mean(dim=1)  # std over s at each d, averaged over d
    return within / grid.flatten(1).std(dim=1, unbiased=False)


def symmetricity(grad_a: torch.Tensor, grad_b: torch.Tensor) -> torch.Tensor:
    """g (run,): the mean over pairs of cos(grad_a, grad_b), gradients (run, n_pairs, d_model).

    >>> g = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> symmetricity(g, g), symmetricity(g, torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]))
    (tensor([1.]), tensor([0.5000]))
    """
    return torch.nn.functional.cosine_similarity(grad_a, grad_b, dim=-1).mean(dim=1)


def circularity(W_E: torch.Tensor, components: int = 4) -> torch.Tensor:
    """c (run,) of operand embeddings W_E (run, p, d_model): how much of each of the top principal components'
    variance over the tokens lies in one frequency, averaged over the components.

    Their notebook loops over frequencies i and sums u[t i mod p] e^{2 pi i t / p}: the same |DFT| at frequency i^-1,
    so one FFT per component gives every frequency at once. Rotations within a circle's plane (two components of
    equal variance, which the SVD may mix) keep all the energy at that frequency, so c does not depend on them.

    >>> t = torch.arange(7.0)[:, None]  # two circles, at frequencies 1 and 3: every component is a pure frequency
    >>> circles = torch.cat([torch.cos(2 * torch.pi * k * t / 7) * r for k, r in ((1, 2.0), (3, 1.0))], dim=1)
    >>> circles = torch.cat([circles, torch.sin(2 * torch.pi * t / 7) * 2, torch.sin(6 * torch.pi * t / 7)], dim=1)
    >>> spike = torch.eye(7)[:, :1]  # one token apart: a flat spectrum, 2 / (p - 1) in any one frequency
    >>> circularity(circles[None]).round(decimals=4), circularity(spike[None], components=1).round(decimals=4)
    (tensor([1.]), tensor([0.3333]))
    """
    p = W_E.shape[1]
    centered = W_E - W_E.mean(dim=1, keepdim=True)
    U = torch.linalg.svd(centered, full_matrices=False).U[..., :components]  # (run, p, c): unit-norm scores
    power = torch.fft.fft(U, dim=1).abs().square()  # (run, p, c): frequency k and p - k carry the same power
    return (2 * power.amax(dim=1) / p).clamp(max=1.0).mean(dim=1)


def _applies(config: RunConfig) -> bool:
    """a transformer on modular addition (Zhong et al.'s setting)"""
    return is_modular(config) and config.task.operation == "add" and config.model.name == "transformer"  # type: ignore[union-attr]


@register(
    "clock_pizza",
    "clock or pizza: distance irrelevance of the right answer's logit, gradient symmetricity in a and b, and "
    "circularity of the embeddings",
    "distance_irrelevance = mean_d std_s L(s, d) / std L (s = a + b, d = a - b); gradient_symmetricity = mean "
    "over pairs of cos(dL/dx_a, dL/dx_b), x the embedded tokens; circularity = mean over W_E's top 4 principal "
    "components of the share of their variance in one frequency",
    "Zhong et al. 2023 (The Clock and the Pizza), Sec. 4; fjzzq2002/pizza",
    applies=_applies,
    default=False,
)
def clock_pizza(probe: Probe) -> dict[str, torch.Tensor]:
    p = probe.config.task.modulus  # type: ignore[union-attr]
    pairs = probe.table_pairs  # (n, 2): the whole table
    answers = (pairs[:, 0] + pairs[:, 1]) % p
    tokens = probe.model.prepare(pairs.expand(probe.runs, -1, -1))
    b_position = 1 if probe.config.model.sequence == "a b =" else 2  # type: ignore[union-attr]
    embedded: dict[str, torch.Tensor] = {}

    def leaf(x: torch.Tensor) -> torch.Tensor:  # the embedded tokens, as a tensor to differentiate by
        embedded["x"] = x.detach().requires_grad_()
        return embedded["x"]

    with torch.enable_grad():
        logits = probe.model.forward(probe.params, tokens, {"hook_embed": leaf}, buffers=probe.buffers)
        right = logits.gather(2, answers.expand(probe.runs, -1)[..., None])[..., 0]  # (run, n)
        (grad,) = torch.autograd.grad(right.sum(), embedded["x"])  # (run, n, pos, d_model): each pair its own
    return {
        "distance_irrelevance": distance_irrelevance(right.detach(), pairs, p),
        "gradient_symmetricity": symmetricity(grad[:, :, 0], grad[:, :, b_position]),
        "circularity": circularity(probe.operand_embeddings()[0].detach()),
    }
