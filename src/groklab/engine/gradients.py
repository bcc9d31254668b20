"""What happens to the gradients between backward and the optimizer step, per run of a stack: Grokfast's
filters, then ⊥Grad's projection (the order of the two papers' code: Grokfast edits the gradients before
optimizer.step(), whose OrthoGrad wrapper projects them first thing).

Grokfast (Lee et al. 2024, ironjr/grokfast's gradfilter_ema and gradfilter_ma) amplifies each parameter's slow
gradient component: g <- g + lamb * h, where h is

    ema: h_0 = g_0, then h_t = alpha h_{t-1} + (1 - alpha) g_t at every step (the first step included: the code
         starts its average from the first gradient, then updates it with that same gradient);
    ma:  h_t = (g_{t-window+1} + ... + g_t) / window, and g is left alone until `window` gradients were seen.

Each run has its own lamb for each filter (0: off) and its own alpha, as (run,) columns of the optimizer's
hyperparameters; the window is shared by the stack (it sizes the buffer). The moving average keeps a running sum
of its ring buffer, so a step costs O(1) in the window instead of the code's O(window) re-summation; the sum is
recomputed exactly from the buffer once per window so that rounding cannot drift.

A step captured in a CUDA graph passes its step as a 0-dim device tensor (engine/optim.py): the filters then pick
their branches with torch.where and index the ring buffer with a device tensor, the same arithmetic.
"""

from __future__ import annotations

import torch

Step = int | torch.Tensor
"""The updates done before this one: a host int, or a 0-dim tensor on the device (a captured step reads it anew
at each replay)."""


def grokfast_state(params: dict[str, torch.Tensor], ema: bool, ma_window: int | None) -> dict[str, torch.Tensor]:
    """Zeroed filter state for every parameter: NAME.grokfast_ema (run, ...); NAME.grokfast_ma, the ring buffer
    (run, window, ...), and NAME.grokfast_ma_sum (run, ...). The run axis leads, so finished runs cut out."""
    state: dict[str, torch.Tensor] = {}
    for name, p in params.items():
        if ema:
            state[f"{name}.grokfast_ema"] = torch.zeros_like(p)
        if ma_window is not None:
            state[f"{name}.grokfast_ma"] = p.new_zeros((p.shape[0], ma_window, *p.shape[1:]))
            state[f"{name}.grokfast_ma_sum"] = torch.zeros_like(p)
    return state


@torch.no_grad()
def grokfast(
    grads: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    hyper: dict[str, torch.Tensor],
    step: Step,
    ema: bool,
    ma_window: int | None,
) -> dict[str, torch.Tensor]:
    """The filtered gradients of step `step` (0 = the first update); updates `state` in place."""
    out = {}
    for name, grad in grads.items():
        shape = (-1,) + (1,) * (grad.dim() - 1)
        filtered = grad
        if ema:
            alpha, average = hyper["grokfast_alpha"].view(shape), state[f"{name}.grokfast_ema"]
            if isinstance(step, torch.Tensor):
                average.copy_(torch.where(step == 0, grad, average))
            elif step == 0:
                average.copy_(grad)
            average.copy_(average * alpha + grad * (1 - alpha))  # the code's arithmetic, term by term
            filtered = filtered + average * hyper["grokfast_ema"].view(shape)
        if ma_window is not None:
            buffer, total = state[f"{name}.grokfast_ma"], state[f"{name}.grokfast_ma_sum"]
            if isinstance(step, torch.Tensor):
                filtered = _moving_average_on_device(filtered, grad, buffer, total, step, ma_window, hyper, shape)
            else:
                slot = step % ma_window
                total.sub_(buffer[:, slot]).add_(grad)  # the slot holds zeros until the buffer is full
                buffer[:, slot] = grad
                if slot == ma_window - 1:
                    total.copy_(buffer.sum(dim=1))
                if step + 1 >= ma_window:
                    filtered = filtered + total / ma_window * hyper["grokfast_ma"].view(shape)
        out[name] = filtered
    return out


def _moving_average_on_device(
    filtered: torch.Tensor,
    grad: torch.Tensor,
    buffer: torch.Tensor,
    total: torch.Tensor,
    step: torch.Tensor,
    window: int,
    hyper: dict[str, torch.Tensor],
    shape: tuple[int, ...],
) -> torch.Tensor:
    """The moving average's update with a device step: the slot is an index tensor, the exact re-summation is
    computed at every step and kept at the window's last slot, and the amplified average is added times 0 or 1."""
    slot = (step % window).long().view(1)  # (a 0-dim index tensor would be read on the host, as an int)
    total.sub_(buffer.index_select(1, slot).squeeze(1)).add_(grad)
    buffer.index_copy_(1, slot, grad.unsqueeze(1))
    total.copy_(torch.where(slot == window - 1, buffer.sum(dim=1), total))
    full = (step + 1 >= window).to(grad.dtype)
    return filtered + total / window * hyper["grokfast_ma"].view(shape) * full


@torch.no_grad()
def orthogonalize(
    params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], runs: torch.Tensor
) -> dict[str, torch.Tensor]:
    """⊥Grad (Prieto et al. 2025, orthograd.py) for the runs where `runs` (run,) is True: each parameter tensor's
    gradient loses its component along the weights and keeps its norm,

        g_perp = g - (w . g / (w . w + 1e-30)) w,    g <- g_perp |g| / (|g_perp| + 1e-30),

    so the update cannot scale the weights up (the naive loss minimization direction behind softmax collapse).
    """
    out = {}
    for name, grad in grads.items():
        w, g = params[name].detach().flatten(1), grad.flatten(1)  # (run, entries)
        along = (w * g).sum(dim=1, keepdim=True) / ((w * w).sum(dim=1, keepdim=True) + 1e-30)
        perp = g - along * w
        scaled = perp * (g.norm(dim=1, keepdim=True) / (perp.norm(dim=1, keepdim=True) + 1e-30))
        out[name] = torch.where(runs[:, None], scaled, g).view_as(grad)
    return out
