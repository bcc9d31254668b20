"""A Recursive Feature Machine: kernel ridge regression whose metric is the average gradient outer product of its own
predictor (Radhakrishnan et al. 2024), with a run axis. Mallinar et al. 2025 ("Emergence in non-neural models:
grokking modular arithmetic via average gradient outer product"; nmallinar/rfm-grokking, train_kernel.py and
models/gaussian_kernel.py) find grokking in it: test accuracy jumps while the training loss stays 0.

    K_M(x, z) = exp(-(x - z)^T M (x - z) / (2 L^2))           the Gaussian kernel in M's metric
    alpha = (K_M(X, X) + lambda I)^-1 Y                        kernel ridge regression, X (n, d) one-hot, Y (n, c)
    f(x) = sum_i alpha_i K_M(x, X_i)                           the predictor, c outputs
    G_j = df/dx at x = X_j  (c, d),  M <- ((1/n) sum_j G_j^T G_j)^s   the AGOP, G centered over j, s = 1/2

A step of the stack is one iteration, in closed form (Model `fit`, called by the stack instead of a gradient step):
from the second step on M becomes the AGOP of the current predictor, then alpha is solved in the new metric. So the
model evaluated after step t predicts with the alpha of its own M: their iteration t - 1, whose metrics they log
before updating M. A run's parameters are M (d, d), alpha (n, c) and the centers X (n, d): a kernel machine's
weights are its training points and their coefficients (the first step sets the centers; before it, f = 0).

The AGOP without the (n, c, d) tensor of gradients (theirs: one (n, n) x (n, c d) product). With K the training
kernel (n, n), A = alpha, F = K^T A (row j: f(X_j)), and dK(x, X_i)/dx = K M (X_i - x) / L^2:

    G_j = (B_j - f_j X_j^T) M / L^2,  B_j = sum_i K_ij alpha_i X_i^T               (each (c, d); M symmetric)
    sum_j (B_j - f_j X_j^T)^T (B_j - f_j X_j^T)
        = X^T [(K K^T) o (A A^T)] X - X^T [K o (A F^T)] X - (X^T [K o (A F^T)] X)^T + X^T diag(|F_j|^2) X
    sum_j (B_j - f_j X_j^T) = A^T diag(K 1) X - F^T X                          (for the centering: mean of the G_j)

(o: the elementwise product.) Every term is a product of (n, n) and (n, d) matrices: the cost is K K^T, n^3, as the
solve's; tests/unit/test_rfm.py pins M, alpha and the accuracies to their code, iteration by iteration.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from groklab.config import KernelModel
from groklab.models.layers import Hooks, Params, hook
from groklab.models.protocol import run_with_cache


def gaussian_kernel(x: torch.Tensor, z: torch.Tensor, M: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """K_M (run, a, b) of points x (run, a, d) and z (run, b, d) in the metric M (run, d, d), as theirs (squared
    distances |x|_M^2 + |z|_M^2 - 2 x^T M z, clamped at 0).

    >>> x = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    >>> gaussian_kernel(x, x, 4 * torch.eye(2)[None], 1.0)  # exp(-4 / 2) off the diagonal
    tensor([[[1.0000, 0.1353],
             [0.1353, 1.0000]]])
    """
    xM, zM = x @ M, z @ M
    squared = (xM * x).sum(-1)[..., :, None] + (zM * z).sum(-1)[..., None, :] - 2 * xM @ z.mT
    return torch.exp(-squared.clamp(min=0) / (2 * bandwidth**2))


def agop(X: torch.Tensor, alpha: torch.Tensor, K: torch.Tensor, M: torch.Tensor, bandwidth: float,
         centering: bool) -> torch.Tensor:  # fmt: skip
    """(1/n) sum_j G_j^T G_j (run, d, d), G_j the gradient (c, d) of the predictor at training point X_j, centered over
    j if asked: the formula above, from the training kernel K (run, n, n), alpha (run, n, c), X (run, n, d).

    A one-point, one-output check: f(x) = 2 K(x, 0) at x = (1, 0), M = I, L = 1: the gradient is -2 e^(-1/2) (1, 0).

    >>> X, alpha = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]]), torch.tensor([[[2.0], [0.0]]])
    >>> K = gaussian_kernel(X, X, torch.eye(2)[None], 1.0)
    >>> agop(X, alpha, K, torch.eye(2)[None], 1.0, centering=False)[0, 0, 0] * 2  # (0 + (2 e^(-1/2))^2) / 2, x 2
    tensor(1.4715)
    """
    n = X.shape[-2]
    F_ = K.mT @ alpha  # (run, n, c): the predictor at the training points
    cross = X.mT @ (K * (alpha @ F_.mT)) @ X
    total = X.mT @ ((K @ K.mT) * (alpha @ alpha.mT)) @ X - cross - cross.mT
    total = total + X.mT @ (F_.square().sum(-1, keepdim=True) * X)
    outer = total / n
    if centering:  # (1/n) sum (G_j - mean G)^T (G_j - mean G) = (1/n) sum G_j^T G_j - mean^T mean
        mean = (alpha.mT @ (K.sum(-1, keepdim=True) * X) - F_.mT @ X) / n  # (run, c, d)
        outer = outer - mean.mT @ mean
    return M @ outer @ M / bandwidth**4


def matrix_power(S: torch.Tensor, power: float) -> torch.Tensor:
    """S^power (run, d, d) of symmetric positive semi-definite S, through its eigendecomposition (eigenvalues that
    rounding made negative count as 0, as theirs where a fractional power makes them NaN).

    >>> matrix_power(torch.tensor([[[4.0, 0.0], [0.0, 9.0]]]), 0.5)
    tensor([[[2., 0.],
             [0., 3.]]])
    """
    eigenvalues, vectors = torch.linalg.eigh(S)
    return (vectors * eigenvalues.clamp(min=0).pow(power)[..., None, :]) @ vectors.mT


class RecursiveFeatureMachine:
    """The Model protocol for an RFM stack: one-hot token inputs, predictions (run, batch, c), `fit` for a step."""

    def __init__(self, config: KernelModel, vocab: int, positions: int, n_train: int, n_classes: int) -> None:
        self.config, self.vocab, self.n_classes = config, vocab, n_classes
        self.d, self.n_train = positions * vocab, n_train
        self.readout: tuple[str, ...] = ("alpha",)
        self.readout_input = "hook_kernel"  # K(x, X): the features the coefficients read
        self.feature_hooks: tuple[str, ...] = ("hook_kernel",)
        self.embeddings: tuple[str, ...] = ()
        self.neurons_from_weights = False
        self.trains_differently = False

    @property
    def neuron_hook(self) -> str:
        raise ValueError("a kernel machine has no neurons")  # measures that need them are refused before training

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Token inputs (run, n, positions) as concatenated one-hot vectors (run, n, positions * vocab)."""
        return F.one_hot(x, self.vocab).flatten(-2).to(torch.get_default_dtype())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"M": (self.d, self.d), "alpha": (self.n_train, self.n_classes), "centers": (self.n_train, self.d)}

    def init(self, seed: int, dtype: torch.dtype = torch.float32) -> Params:
        """M = I (their start), no coefficients and no centers yet: nothing random, the seed changes only the split."""
        return {
            "M": torch.eye(self.d, dtype=dtype),
            "alpha": torch.zeros(self.n_train, self.n_classes, dtype=dtype),
            "centers": torch.zeros(self.n_train, self.d, dtype=dtype),
        }

    def buffers(self, seeds: list[int], device: torch.device, dtype: torch.dtype) -> Params:
        return {}

    def layout(self, params: Params) -> Params:
        return params

    def forward(
        self,
        params: Params,
        x: torch.Tensor,
        hooks: Hooks | None = None,
        *,
        buffers: Params | None = None,
        generators: list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """f(x) (run, batch, c) = K_M(x, centers) alpha."""
        M = params["M"]
        K = gaussian_kernel(x.to(M.dtype), params["centers"], M, self.config.bandwidth)
        return hook(hooks or {}, "hook_kernel", K) @ params["alpha"]

    def fit(self, params: Params, x: torch.Tensor, y: torch.Tensor, step: int) -> None:
        """One iteration on the training set x (run, n, d), labels y (run, n), parameters updated in place."""
        c = self.config
        with torch.no_grad():
            M, X = params["M"], x.to(params["M"].dtype)
            if step > 0:  # the first step has no predictor yet: it solves in M = I
                K = gaussian_kernel(X, X, M, c.bandwidth)
                M.copy_(matrix_power(agop(X, params["alpha"], K, M, c.bandwidth, c.centering), c.agop_power))
            K = gaussian_kernel(X, X, M, c.bandwidth)
            ridge = c.ridge * torch.eye(K.shape[-1], dtype=K.dtype, device=K.device)
            params["alpha"].copy_(torch.linalg.solve(K + ridge, F.one_hot(y, self.n_classes).to(K.dtype)))
            params["centers"].copy_(X)

    def run_with_cache(
        self, params: Params, x: torch.Tensor, *, buffers: Params | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return run_with_cache(self, params, x, buffers)

    def hook_names(self) -> list[str]:
        return ["hook_kernel"]

    def at_readout(self, activation: torch.Tensor) -> torch.Tensor:
        return activation

    def neuron_weights(self, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        raise ValueError("a kernel machine has no neurons")

    def silence_neurons(self, params: Params, keep: torch.Tensor) -> Params:
        raise ValueError("a kernel machine has no neurons")

    def matrices(self, params: Params) -> dict[str, torch.Tensor]:
        """The feature matrix M (run, d, d): the spectral measures read the learned metric."""
        return {"M": params["M"]}

    def operand_embeddings(self, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """What the metric makes of operand a and b: the columns of M^(1/2) at their one-hot positions, (run, p, d)
        each (|M^(1/2)(x - z)| is the kernel's distance, so M^(1/2) x is the feature map)."""
        root = matrix_power(params["M"], 0.5)
        return root[:, :, : self.vocab].mT, root[:, :, self.vocab : 2 * self.vocab].mT
