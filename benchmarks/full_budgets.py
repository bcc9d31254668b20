"""The papers' full budgets in one device session: as many as fit, in the order of what they settle.

    python benchmarks/full_budgets.py --device cuda --minutes 8 --out DIR    (on a GPU)
    python benchmarks/full_budgets.py --device cpu --quick --out DIR         (the script itself, at tiny budgets)

Each entry is a built-in at its paper's budget (the spec's own where it already is, an override where the spec was
cut to fit a CPU), with what its verdicts settle and an estimate of its device time. An entry starts only if its
estimate fits in what is left of --minutes; the rest are listed with their estimates. For each entry that ran: its
wall time and every claim's verdict with the measured value, as a markdown table (also DIR/full-budgets.md), to go
into docs/reproductions.md (and the slow tests' expected exceptions where a verdict changed).

The estimates assume the captured step's goals (docs/benchmarks.md, GPU: a transformer step of 3-5 ms, a small MLP's
~1 ms, a stack of runs about the price of one) and the spec's evaluations; they are estimates until measured.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import groklab
from groklab.expectations import check


@dataclass(frozen=True)
class Budget:
    spec: str
    settles: str
    minutes: float
    """Estimated device minutes at the paper's budget."""
    sets: list[str] = field(default_factory=list)
    """Overrides that restore the paper's budget where the spec's was cut for a CPU."""


BUDGETS = [
    Budget("grokfast", "the baseline reaching 95% (paper: 39,890 steps) next to Grokfast's filters", 4.0),
    Budget(
        "prieto-parity",
        "StableMax groks (43, 3) parity without weight decay (paper: 100,000 epochs)",
        2.0,
        ["train.steps=100000"],
    ),  # fmt: skip
    Budget(
        "prieto-collapse",
        "float64 and StableMax generalize without weight decay (paper: 80,000 epochs)",
        3.0,
        ["train.steps=80000"],
    ),  # fmt: skip
    Budget("slingshot", "grokking without weight decay at slingshot onsets (1e5 steps, eps swept)", 8.0),
    Budget("liu-phases", "the four phases over decoder lr x weight decay at 1e5 steps", 4.0),
    Budget("nanda-fraction-sweep", "epochs to test loss < 1 from 270 at 60% to ~21k at 25%", 12.0),
    Budget("power-operations", "which modular operations generalize at which training fraction (1e5 steps)", 120.0),
    Budget("power-operations-s5", "which S5 products generalize at which training fraction (1e5 steps)", 60.0),
]


VERDICTS = {True: "met", False: "not met", None: "no verdict"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--minutes", type=float, default=8.0, help="device minutes this script may spend")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="each spec's quick variant (to try the script)")
    args = parser.parse_args()
    started, lines = time.perf_counter(), ["| spec | settles | wall time | claims |", "|---|---|---|---|"]
    for budget in BUDGETS:
        left = args.minutes - (time.perf_counter() - started) / 60
        if not args.quick and budget.minutes > left:
            lines.append(f"| {budget.spec} | {budget.settles} | did not fit: ~{budget.minutes:g} min estimated | |")
            continue
        began = time.perf_counter()
        sets = None if args.quick else budget.sets or None  # --quick: the spec's quick budget, not the paper's
        result = groklab.run(budget.spec, out=args.out / budget.spec, device=args.device, sets=sets, quick=args.quick,
                             progress=False)  # fmt: skip
        wall = (time.perf_counter() - began) / 60
        verdicts = "; ".join(
            f"{v.claim.split(' (checked')[0]}: {v.measured} ({VERDICTS[v.met]})" for v in check(result)
        )
        lines.append(f"| {budget.spec} | {budget.settles} | {wall:.1f} min | {verdicts} |")
        print(lines[-1], flush=True)
    (args.out / "full-budgets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
