"""What each exact shortcut of the transformer saves: training-step time with the shortcuts added one by one.

    python benchmarks/bench_shortcuts.py [--repeats 5] [--threads N]

On the built-in specs nanda-modadd (1 layer, full batch) and power-division (2 layers, "a op b =", causal,
batch 512). Each row trains the same stack with one more shortcut of models/shortcuts.py turned on:
every position (models/transformer.py) -> the last block at "=" only -> layer 0's q/k/v from the
(position, token) table -> the 1-layer score table (nanda-modadd) or the shared "a op" prefix
(power-division). Medians of interleaved repeats; the numbers are quoted in models/shortcuts.py.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date

import torch

from groklab.config import expand_runs, resolve_spec
from groklab.engine.plan import cpu_count
from groklab.engine.stack import Stack
from groklab.models import ShortcutTransformer
from groklab.models.transformer import Transformer, attention_scores

NO_HOOKS: dict = {}


def last_position(model: ShortcutTransformer, table: bool) -> Callable[..., torch.Tensor]:
    """The last block at "=" only; layer 0's q/k/v from the table when `table`."""

    def forward(params: dict, tokens: torch.Tensor, hooks: object = None, **kwargs: object) -> torch.Tensor:
        resid = model.embed(params, tokens, NO_HOOKS)
        pos = model.positions(params, tokens.shape[0], resid)
        for layer in range(model.config.n_layers):
            last = layer == model.config.n_layers - 1
            if layer == 0 and table:
                q, k, v = model._qkv_by_token(params, pos, tokens, last)
            else:
                q, k, v = model.qkv(params, layer, resid)
            if last:
                q, resid = q[:, :, -1:], resid[:, :, -1:]
            attn_out = model.attend(params, layer, attention_scores(q, k, model.config.attention), v, NO_HOOKS, None)
            resid = model.mlp_block(params, layer, resid, attn_out, NO_HOOKS, None)
        return model.unembed(params, resid, NO_HOOKS)

    return forward


def variants(stack: Stack) -> dict[str, Callable[..., torch.Tensor]]:
    model = stack.model
    assert isinstance(model, ShortcutTransformer)
    plain = Transformer(model.config, model.vocab, model.n_classes)
    last = "1-layer score table" if model.config.n_layers == 1 else 'shared "a op" prefix'
    return {
        "every position": plain.forward,
        '+ last block at "=" only': last_position(model, table=False),
        "+ layer-0 q/k/v table": last_position(model, table=True),
        f"+ {last} (all shortcuts)": model.forward,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = platform.processor() or platform.machine()
    print(f"{date.today()}  {machine}, {cpu_count()} cores, {args.threads} threads, torch {torch.__version__}")
    print("| workload | forward | ms/step | vs every position |\n|---|---|---|---|")
    for name, steps in (("nanda-modadd", 3), ("power-division", 10)):
        config = expand_runs(resolve_spec(name))[0]
        stack = Stack([("r0", config)], "cpu")
        forwards = variants(stack)
        with torch.no_grad():  # every variant computes the same logits (exact shortcuts)
            reference = forwards["every position"](stack.params, stack.runs.x_test)
            for forward in forwards.values():
                torch.testing.assert_close(forward(stack.params, stack.runs.x_test), reference, rtol=1e-4, atol=1e-4)
        times: dict[str, list[float]] = {label: [] for label in forwards}
        step = iter(range(10**9))
        for _ in range(args.repeats + 1):  # the first round warms up
            for label, forward in forwards.items():
                stack.model.forward = forward  # type: ignore[method-assign]
                start = time.perf_counter()
                for _ in range(steps):
                    stack.train_step(next(step))
                times[label].append((time.perf_counter() - start) / steps)
        base = statistics.median(times["every position"][1:])
        for label, series in times.items():
            ms = statistics.median(series[1:])
            print(f"| {name} | {label} | {ms * 1e3:.1f} | {base / ms:.2f}x |")


if __name__ == "__main__":
    main()
