"""The empirical neural tangent kernel of a one-output network, and how it moves (Kumar et al. 2024's lazy-to-rich
transition): K(x, x') = sum over parameters of df(x)/dtheta . df(x')/dtheta, on the first measures.ntk_examples
training inputs, at the current parameters and at initialization.

    ntk_alignment = <K_c, y_c y_c^T>_F / (|K_c|_F |y_c|^2)     centered kernel-target alignment (Cortes et al.
                                                              2012): K_c = H K H, y_c = H y, H = I - 11^T / n
    ntk_change    = |K - K_0|_F / |K_0|_F                     how far the kernel moved from its initial value

A lazy network (large output scale) keeps K ~ K_0 and learns as a fixed kernel machine; a rich one moves its
kernel toward the target (alignment up), which is when its test loss falls.
"""

from __future__ import annotations

import torch

from groklab.config import RunConfig
from groklab.measures.probe import Probe
from groklab.measures.registry import register


def centered_alignment(kernel: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Centered kernel-target alignment of an (n, n) kernel with targets y (n,): 1 for K = y y^T (up to scale and
    shift).

    >>> y = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    >>> round(float(centered_alignment(3 * torch.outer(y, y) + 5, y)), 6)
    1.0
    >>> round(float(centered_alignment(torch.eye(3, dtype=torch.float64), y)), 4)  # |y_c|^2 / (sqrt(2) |y_c|^2)
    0.7071
    """
    n = len(y)
    center = torch.eye(n, dtype=kernel.dtype) - 1.0 / n
    centered, y_c = center @ kernel @ center, center @ y
    return (y_c @ centered @ y_c) / (centered.norm() * y_c.square().sum())


def empirical_ntk(probe: Probe, params: dict[str, torch.Tensor], run: int, x: torch.Tensor) -> torch.Tensor:
    """K = J J^T (n, n) of one run's output on inputs x (n, ...), J the Jacobian over every parameter."""
    one = {name: p[run : run + 1].detach().requires_grad_() for name, p in params.items()}
    buffers = {name: b[run : run + 1] for name, b in probe.buffers.items()}
    with torch.enable_grad():
        outputs = probe.model.forward(one, x[None], buffers=buffers)[0, :, 0]  # (n,)
        rows = []
        for i in range(len(outputs)):  # one backward pass per example: exact, and cheap at these sizes
            grads = torch.autograd.grad(outputs[i], list(one.values()), retain_graph=i < len(outputs) - 1)
            rows.append(torch.cat([g.flatten() for g in grads]))
    jacobian = torch.stack(rows).to(torch.float64)
    return jacobian @ jacobian.T


def _one_output(config: RunConfig) -> bool:
    return config.loss_kind == "regression" and config.model.name == "mlp"


@register(
    "ntk",
    "empirical NTK on the first ntk_examples training inputs: its centered alignment with the targets and its "
    "relative change from initialization",
    "ntk_alignment = <HKH, H y y^T H> / (|HKH| |Hy|^2); ntk_change = |K - K_0|_F / |K_0|_F, K = J J^T",
    "Kumar et al. 2024 (lazy -> rich); Cortes et al. 2012 (centered alignment)",
    applies=_one_output,
    default=False,
)
def ntk(probe: Probe) -> dict[str, torch.Tensor]:
    n = probe.options.ntk_examples
    x, y = probe.stacked["x_train"][:, :n], probe.stacked["y_train"][:, :n]
    alignment, change = [], []
    for run in range(probe.runs):
        kernel = empirical_ntk(probe, probe.params, run, x[run])
        initial = empirical_ntk(probe, probe.init_params, run, x[run])
        alignment.append(centered_alignment(kernel, y[run].to(torch.float64)))
        change.append((kernel - initial).norm() / initial.norm())
    dtype = x.dtype
    return {"ntk_alignment": torch.stack(alignment).to(dtype), "ntk_change": torch.stack(change).to(dtype)}
