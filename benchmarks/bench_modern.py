"""The modern block (pre-RMSNorm, rotary positions, SwiGLU) in groklab next to the same block in plain PyTorch.

    python benchmarks/bench_modern.py [--repeats 5] [--ks 1,8] [--threads N]

Workload: the race's task, (a + b) mod 113 with 30% of the pairs, full batch, one block of d_model 128, 4 heads and
a SwiGLU MLP of 512, AdamW. The plain model is written as a Llama-style block is (nn.RMSNorm, rotary positions by
rotate-half, a SwiGLU MLP from three nn.Linear), trained one model at a time; groklab trains K runs as one stack
through the exact shortcuts (models/shortcuts.py: rotary queries and keys in the (position, token) table, the block
at "=" only), and, in the column "every position", through the plain transformer (models/transformer.py): what the
shortcuts save. Training step only (forward, loss, backward, AdamW step), medians of interleaved repeats, ms per
run-step.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from collections.abc import Callable
from datetime import date

import torch
import torch.nn.functional as F
from bench_engine import _time
from torch import nn

from groklab import RunConfig
from groklab.engine.plan import cpu_count
from groklab.engine.stack import Stack
from groklab.models import Transformer

SPEC = {
    "task": {"name": "modular", "modulus": 113, "train_fraction": 0.3},
    "model": {"name": "transformer", "d_model": 128, "n_heads": 4, "d_mlp": 512, "layernorm": "pre",
              "norm": "rmsnorm", "positional": "rotary", "mlp": "gated", "activation": "silu"},
    "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 1.0, "betas": [0.9, 0.98]},
}  # fmt: skip


class LlamaBlock(nn.Module):
    """One pre-RMSNorm block with rotary attention and a SwiGLU MLP, read at the last position."""

    def __init__(self, d_vocab: int, n_out: int, d: int = 128, heads: int = 4, d_mlp: int = 512) -> None:
        super().__init__()
        self.heads, self.embed = heads, nn.Embedding(d_vocab, d)
        self.norm1, self.norm2, self.norm_final = nn.RMSNorm(d, eps=1e-5), nn.RMSNorm(d, eps=1e-5), nn.RMSNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.gate, self.up, self.down = nn.Linear(d, d_mlp, bias=False), nn.Linear(d, d_mlp), nn.Linear(d_mlp, d)
        self.unembed = nn.Linear(d, n_out, bias=False)

    def rotate(self, x: torch.Tensor) -> torch.Tensor:  # (batch, head, pos, d_head)
        half, n = x.shape[-1] // 2, x.shape[-2]
        angles = torch.arange(n)[:, None] * 10000 ** (-torch.arange(half) / half)
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        z = F.scaled_dot_product_attention(self.rotate(q), self.rotate(k), v, is_causal=True)
        x = x + self.out(z.transpose(1, 2).reshape(b, n, d))
        h = self.norm2(x)
        x = x + self.down(F.silu(self.gate(h)) * self.up(h))
        return self.unembed(self.norm_final(x)[:, -1])


def steps(k: int) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None]]:
    config = RunConfig.model_validate(SPEC)
    runs = [(f"r{i}", config.model_copy(update={"seed": i})) for i in range(k)]
    stack, every_position = Stack(runs, torch.device("cpu")), Stack(runs, torch.device("cpu"))
    every_position.model = Transformer(stack.model.config, stack.model.vocab, stack.model.n_classes)  # type: ignore[attr-defined]
    counter = iter(range(10**9))
    x, y = stack.runs.x_train[0], stack.runs.y_train[0]
    plain = LlamaBlock(stack.model.d_vocab, stack.model.n_classes)  # type: ignore[attr-defined]
    opt = torch.optim.AdamW(plain.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))

    def plain_step() -> None:
        opt.zero_grad()
        F.cross_entropy(plain(x), y).backward()
        opt.step()

    return (lambda: stack.train_step(next(counter))), (lambda: every_position.train_step(next(counter))), plain_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ks", default="1,8", help="stack sizes")
    parser.add_argument("--threads", type=int, default=cpu_count(), help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{date.today()}  {platform.processor() or platform.machine()}, {cpu_count()} cores, {args.threads} threads, "
          f"torch {torch.__version__}")  # fmt: skip
    print("| K | plain Llama-style block, ms/run-step | groklab every position | groklab | groklab speedup |")
    print("|---|---|---|---|---|")
    for k in (int(k) for k in args.ks.split(",")):
        ours, every, theirs = steps(k)
        _time(ours, 1), _time(every, 1), _time(theirs, 2)  # warm up
        times: dict[str, list[float]] = {"ours": [], "every": [], "theirs": []}
        for _ in range(args.repeats):  # interleaved, so machine noise hits all alike
            times["ours"].append(_time(ours, 2) / k)
            times["every"].append(_time(every, 2) / k)
            times["theirs"].append(_time(theirs, 4))
        ours_ms, every_ms, theirs_ms = (statistics.median(times[key]) * 1e3 for key in ("ours", "every", "theirs"))
        print(f"| {k} | {theirs_ms:.1f} | {every_ms:.1f} | {ours_ms:.1f} | {theirs_ms / ours_ms:.2f}x |")


if __name__ == "__main__":
    main()
