"""Transformer step time: groklab next to plain PyTorch implementations, side by side in one run.

    python benchmarks/bench_transformer.py [--repeats 5] [--threads N]

Workloads (the built-in specs): nanda-modadd (p=113, 30% of pairs, full batch of 3831, 1-layer
transformer, float64 loss) and power-division (x/y mod 97, 2 layers, minibatch 512). The plain models
are written the way the public repositories write them: Nanda's `Transformer` (einsum attention over
every position, logits everywhere, the last one read) and a Power re-implementation built from
nn.MultiheadAttention with post-LayerNorm. Both time the training step (forward, loss, backward, AdamW
step); for nanda-modadd a third column adds what Nanda's own trainer also does every step, a forward
pass over the test set for its loss. groklab evaluates on a schedule instead (train.eval_every). The
column "no shortcuts" trains groklab's plain transformer (every position computed, models/transformer.py)
instead of the shortcut one (models/shortcuts.py): what the exact shortcuts save.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date

import torch
import torch.nn.functional as F
from torch import nn

from groklab.config import expand_runs, resolve_spec
from groklab.engine.plan import cpu_count
from groklab.engine.stack import Stack
from groklab.models import Transformer


class NandaTransformer(nn.Module):
    """Nanda et al.'s 1-layer model as their code writes it: every position computed, einsum attention."""

    def __init__(self, d_vocab: int, n_out: int, d_model: int = 128, n_heads: int = 4, d_mlp: int = 512) -> None:
        super().__init__()
        d_head = d_model // n_heads
        self.W_E = nn.Parameter(torch.randn(d_model, d_vocab) / math.sqrt(d_model))
        self.W_pos = nn.Parameter(torch.randn(3, d_model) / math.sqrt(d_model))
        self.W_K, self.W_Q, self.W_V = (
            nn.Parameter(torch.randn(n_heads, d_head, d_model) / math.sqrt(d_model)) for _ in range(3)
        )
        self.W_O = nn.Parameter(torch.randn(d_model, d_head * n_heads) / math.sqrt(d_model))
        self.W_in = nn.Parameter(torch.randn(d_mlp, d_model) / math.sqrt(d_model))
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.randn(d_model, d_mlp) / math.sqrt(d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.W_U = nn.Parameter(torch.randn(d_model, n_out) / math.sqrt(n_out))
        self.register_buffer("mask", torch.tril(torch.ones(3, 3)))
        self.d_head = d_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        resid = torch.einsum("dbp -> bpd", self.W_E[:, x]) + self.W_pos[: x.shape[-1]]
        k = torch.einsum("ihd,bpd->biph", self.W_K, resid)
        q = torch.einsum("ihd,bpd->biph", self.W_Q, resid)
        v = torch.einsum("ihd,bpd->biph", self.W_V, resid)
        scores = torch.einsum("biph,biqh->biqp", k, q)
        scores = torch.tril(scores) - 1e10 * (1 - self.mask)
        pattern = F.softmax(scores / math.sqrt(self.d_head), dim=-1)
        z = torch.einsum("biph,biqp->biqh", v, pattern)
        z_flat = z.permute(0, 2, 1, 3).reshape(z.shape[0], z.shape[2], -1)
        resid = resid + torch.einsum("df,bqf->bqd", self.W_O, z_flat)
        hidden = F.relu(torch.einsum("md,bpd->bpm", self.W_in, resid) + self.b_in)
        resid = resid + torch.einsum("dm,bpm->bpd", self.W_out, hidden) + self.b_out
        return resid @ self.W_U


class PowerTransformer(nn.Module):
    """A public-style re-implementation of Power et al.'s 2-layer post-LN decoder (nn.MultiheadAttention)."""

    def __init__(self, d_vocab: int, n_out: int, d_model: int = 128, n_heads: int = 4, n_layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(d_vocab, d_model)
        self.attn = nn.ModuleList(
            nn.MultiheadAttention(d_model, n_heads, bias=False, batch_first=True) for _ in range(n_layers)
        )
        self.ln1 = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.ffn = nn.ModuleList(
            nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.ReLU(), nn.Linear(4 * d_model, d_model))
            for _ in range(n_layers)
        )
        self.ln2 = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.unembed = nn.Linear(d_model, n_out)
        position = torch.arange(4)[:, None]
        frequency = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        table = torch.zeros(4, d_model)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
        self.register_buffer("positions", table)
        self.register_buffer("causal", torch.triu(torch.ones(4, 4, dtype=torch.bool), diagonal=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.positions
        for attn, ln1, ffn, ln2 in zip(self.attn, self.ln1, self.ffn, self.ln2):
            h = ln1(h + attn(h, h, h, attn_mask=self.causal, need_weights=False)[0])
            h = ln2(h + ffn(h))
        return self.unembed(h)


def plain_step(name: str, stack: Stack, test_every_step: bool = False) -> Callable[[], None]:
    model = stack.model
    tokens, labels = stack.runs.x_train[0], stack.runs.y_train[0]
    if name == "nanda-modadd":
        net: nn.Module = NandaTransformer(model.d_vocab, model.n_classes)
        batch_size = None
    else:
        net = PowerTransformer(model.d_vocab, model.n_classes)
        batch_size = 512
    net = net.to(stack.device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        if batch_size is None:
            x, y = tokens, labels
        else:
            index = torch.randint(len(tokens), (batch_size,), generator=generator).to(tokens.device)
            x, y = tokens[index], labels[index]
        logits = net(x)[:, -1]
        loss = F.cross_entropy(logits.to(torch.float64), y) if name == "nanda-modadd" else F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if test_every_step:  # Nanda's trainer: the test loss, every step
            test_logits = net(stack.runs.x_test[0])[:, -1]
            F.cross_entropy(test_logits.to(torch.float64), stack.runs.y_test[0]).item()

    return step


def groklab_step(stack: Stack, loss: str) -> Callable[[], None]:
    counter = iter(range(10**9))
    return lambda: stack.train_step(next(counter))


def _time(fn: Callable[[], None], steps: int) -> float:
    """Seconds per call; on a GPU the queued work is waited for before the clock is read, both ends."""
    if on_gpu := torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if on_gpu:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median reported)")
    parser.add_argument("--threads", type=int, default=cpu_count(), help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, steps in (("nanda-modadd", 3), ("power-division", 10)):
        config = expand_runs(resolve_spec(name))[0]
        stack = Stack([("r0", config)], torch.device("cpu"))
        groklab = groklab_step(stack, config.train.loss)
        unshortcut = Stack([("r0", config)], torch.device("cpu"))
        unshortcut.model = Transformer(stack.model.config, stack.model.vocab, stack.model.n_classes)
        no_shortcuts = groklab_step(unshortcut, config.train.loss)
        plain = plain_step(name, stack)
        trainer = plain_step(name, stack, test_every_step=True) if name == "nanda-modadd" else None
        contenders = [fn for fn in (plain, trainer, no_shortcuts, groklab) if fn is not None]
        for fn in contenders:
            _time(fn, 2)  # warm up
        times: list[list[float]] = [[] for _ in contenders]
        for _ in range(args.repeats):  # interleaved: machine noise hits all alike
            for fn, series in zip(contenders, times):
                series.append(_time(fn, steps))
        medians = [statistics.median(series) * 1e3 for series in times]
        rows.append((name, medians[0], medians[1] if trainer else None, medians[-2], medians[-1]))
    print(
        f"{date.today()}  {platform.processor() or platform.machine()}, {cpu_count()} cores, "
        f"{args.threads} threads, torch {torch.__version__}"
    )
    print(
        "| workload | plain PyTorch ms/step | + test loss every step (Nanda's trainer) "
        "| groklab, no shortcuts ms/step | groklab ms/step | speedup |"
    )
    print("|---|---|---|---|---|---|")
    for name, plain_ms, trainer_ms, full_ms, groklab_ms in rows:
        trainer = f"{trainer_ms:.1f} ({trainer_ms / groklab_ms:.2f}x)" if trainer_ms else "-"
        shortcuts = f"{full_ms:.1f} ({full_ms / groklab_ms:.2f}x)"
        print(
            f"| {name} | {plain_ms:.1f} | {trainer} | {shortcuts} | {groklab_ms:.1f} | {plain_ms / groklab_ms:.2f}x |"
        )


if __name__ == "__main__":
    main()
