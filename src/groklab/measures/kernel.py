"""The empirical neural tangent kernel of a one-output network, and how it moves (Kumar et al. 2024's lazy-to-rich
transition): K(x, x') = sum over parameters of df(x)/dtheta . df(x')/dtheta, on the first measures.ntk.examples
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


def empirical_ntk(probe: Probe, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """K_r = J_r J_r^T (run, n, n) of each run's output on its inputs x (run, n, ...), J_r the Jacobian over every
    parameter of run r.

    The runs of a stack are independent, so the gradient of sum_r f_r(x_i) with respect to run r's parameters is
    that of f_r(x_i) alone: one backward pass per example gives every run's row i at once (exact; at these sizes
    faster than torch.func.jacrev, whose (n, run, P) Jacobian costs more to build than the passes it saves).
    """
    leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
    with torch.enable_grad():
        outputs = probe.model.forward(leaves, x, buffers=probe.buffers)[..., 0].sum(dim=0)  # (n,)
        rows = []
        for i in range(len(outputs)):
            grads = torch.autograd.grad(outputs[i], list(leaves.values()), retain_graph=i < len(outputs) - 1)
            rows.append(torch.cat([g.flatten(1) for g in grads], dim=1))  # (run, P)
    jacobian = torch.stack(rows, dim=1)  # (run, n, P)
    return (jacobian @ jacobian.transpose(1, 2)).to(torch.float64)  # the model's precision: K's rounding is J's


def _one_output(config: RunConfig) -> bool:
    return config.loss_kind == "regression" and config.model.name == "mlp"


@register(
    "ntk",
    "empirical NTK on the first ntk.examples training inputs: its centered alignment with the targets and its "
    "relative change from initialization",
    "ntk_alignment = <HKH, H y y^T H> / (|HKH| |Hy|^2); ntk_change = |K - K_0|_F / |K_0|_F, K = J J^T",
    "Kumar et al. 2024 (lazy -> rich); Cortes et al. 2012 (centered alignment)",
    applies=_one_output,
    default=False,
)
def ntk(probe: Probe) -> dict[str, torch.Tensor]:
    n = probe.options.ntk.examples
    x, y = probe.stacked["x_train"][:, :n], probe.stacked["y_train"][:, :n].to(torch.float64)
    kernel = empirical_ntk(probe, probe.params, x)
    ids = probe.ids or [str(run) for run in range(probe.runs)]
    if any(("ntk", run_id) not in probe.at_init for run_id in ids):  # K_0 once per run, not at every evaluation
        for run_id, initial in zip(ids, empirical_ntk(probe, probe.init_params, x)):
            probe.at_init[("ntk", run_id)] = initial
    initial = torch.stack([probe.at_init[("ntk", run_id)] for run_id in ids])
    alignment = torch.stack([centered_alignment(k, target) for k, target in zip(kernel, y)])
    change = (kernel - initial).flatten(1).norm(dim=1) / initial.flatten(1).norm(dim=1)
    return {"ntk_alignment": alignment.to(x.dtype), "ntk_change": change.to(x.dtype)}
