"""Building blocks shared by the models, each with a leading run axis: (run, batch, ...) activations and
(run, ...) parameters. Bottom-up: activations, the batched linear map, normalization, dropout, hooks."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]
Hooks = dict[str, Callable[[torch.Tensor], torch.Tensor]]
"""Hook point name -> fn(activation) -> activation: reads an activation, or replaces it (ablations)."""

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "quadratic": lambda h: h * h,  # not torch.square: pow backward is ~5x slower on CPU
    "relu": torch.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "silu": F.silu,
    "identity": lambda h: h,
    "near_linear": lambda h: h + 0.01 * h * h,  # Kumar et al. 2024: linear but for a small quadratic part
}


def hook(hooks: Hooks, name: str, value: torch.Tensor) -> torch.Tensor:
    """Pass an activation through hook point `name` (unchanged when no hook is set there)."""
    fn = hooks.get(name)
    return value if fn is None else fn(value)


def linear(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """h (run, batch, d_in) @ W (run, d_in, d_out) + b (run, d_out), fused into one matmul call.

    A stack of one run uses addmm/mm on the squeezed tensors: ~15% faster than bmm on CPU.
    """
    if h.shape[0] == 1:
        # squeeze, not [0]: its backward is a view, while select's backward allocates and fills zeros.
        h, W = h.squeeze(0), W.squeeze(0)
        out = torch.mm(h, W) if b is None else torch.addmm(b.squeeze(0), h, W)
        return out.unsqueeze(0)
    return torch.bmm(h, W) if b is None else torch.baddbmm(b.unsqueeze(1), h, W)


def named_matrices(params: Params) -> dict[str, torch.Tensor]:
    """Every weight matrix of a model named as TransformerLens names them (W_*) as (run, fan_in, fan_out); attention
    weights with their heads side by side."""
    out = {}
    for name, p in params.items():
        leaf = name.rsplit(".", 1)[-1]
        if not leaf.startswith("W_"):
            continue
        if leaf in ("W_Q", "W_K", "W_V"):  # (run, head, d_model, d_head) -> (run, d_model, head * d_head)
            p = p.permute(0, 2, 1, 3).flatten(2)
        elif leaf == "W_O":  # (run, head, d_head, d_model) -> (run, head * d_head, d_model)
            p = p.flatten(1, 2)
        out[name] = p
    return out


def stack_params(per_run: list[Params]) -> Params:
    """[{name: (...)}] * K -> {name: (K, ...)}."""
    return {name: torch.stack([p[name] for p in per_run]) for name in per_run[0]}


def layer_norm(x: torch.Tensor, params: Params, prefix: str) -> torch.Tensor:
    """LayerNorm over the last axis with per-run gain `prefix`w and bias `prefix`b, both (run, d)."""
    w, b = params[prefix + "w"], params[prefix + "b"]
    shape = (w.shape[0],) + (1,) * (x.dim() - 2) + (w.shape[1],)
    return F.layer_norm(x, (x.shape[-1],)) * w.view(shape) + b.view(shape)


def batch_norm(
    h: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    running: tuple[torch.Tensor, torch.Tensor],
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """BatchNorm over the batch axis of each run: h (run, batch, N), gamma/beta/running stats (run, N).

    As torch.nn.BatchNorm1d: training normalizes by the batch's mean and biased variance and moves the
    running mean and *unbiased* variance a `momentum` step towards them; evaluation uses the running ones.
    """
    running_mean, running_var = running
    if training:
        mean, var = h.mean(dim=1), h.var(dim=1, unbiased=False)  # (run, N)
        with torch.no_grad():
            n = h.shape[1]
            running_mean.lerp_(mean, momentum)
            running_var.lerp_(var * (n / max(n - 1, 1)), momentum)
    else:
        mean, var = running_mean, running_var
    return (h - mean[:, None]) * torch.rsqrt(var[:, None] + eps) * gamma[:, None] + beta[:, None]


def dropout(h: torch.Tensor, rate: float, generators: list[torch.Generator] | None) -> torch.Tensor:
    """Inverted dropout, each run's mask drawn from its own generator, so a run's masks do not depend on the
    other runs of its stack. The masks are drawn where the generators live — the stack's device (engine/stack.py):
    on a GPU no mask crosses from the host, and no step waits for one. No generators (evaluation) or rate 0:
    identity."""
    if generators is None or rate == 0.0:
        return h
    keep = torch.stack([torch.rand(h.shape[1:], generator=g, device=g.device) for g in generators]) >= rate
    return h * keep.to(h.device) / (1.0 - rate)
