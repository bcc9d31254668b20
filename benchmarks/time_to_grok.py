"""Time to grok, end to end: wall time from a fresh process to nanda-modadd's test loss < 1 and to 99% test accuracy.

    python benchmarks/time_to_grok.py [--device cuda] [--spec nanda-modadd] [--set KEY=VALUE ...]

The clock starts before groklab is imported, so the time includes the import, the spec's validation, making the
data and every evaluation's measures: what `groklab run nanda-modadd` costs a researcher. The run stops once it
generalized (train.stop_after_generalized=0); a callback stamps each evaluation as it is heard.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before any import of torch or groklab

import argparse  # noqa: E402
import tempfile  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import groklab  # noqa: E402
from groklab.runner.trackers import Evaluation  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--spec", default="nanda-modadd")
    parser.add_argument("--set", action="append", default=[], help="overrides of the spec (KEY=VALUE)")
    args = parser.parse_args()
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"{date.today()}  {name}, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    reached: dict[str, tuple[int, float]] = {}

    def stamp(evaluation: Evaluation) -> None:
        now = time.perf_counter() - STARTED
        if "test_loss < 1" not in reached and evaluation.metrics.get("test_loss", float("inf")) < 1:
            reached["test_loss < 1"] = (evaluation.step, now)
        if "generalized" in evaluation.milestones:
            reached["99% test accuracy"] = (evaluation.step, now)
        if evaluation.step % 1000 == 0:
            print(f"  step {evaluation.step}: {now:.1f} s, test loss {evaluation.metrics.get('test_loss'):.3f}",
                  flush=True)  # fmt: skip

    sets = ["train.stop_after_generalized=0", *args.set]
    with tempfile.TemporaryDirectory() as out:
        groklab.run(args.spec, out=Path(out) / args.spec, device=args.device, sets=sets, progress=False,
                    callbacks=[stamp])  # fmt: skip
    total = time.perf_counter() - STARTED
    print("| spec | device | milestone | step | wall time from process start |")
    print("|---|---|---|---|---|")
    for milestone, (step, seconds) in reached.items():
        print(f"| {args.spec} | {name} | {milestone} | {step} | {seconds:.1f} s |")
    print(f"| {args.spec} | {name} | run ended (stored) | | {total:.1f} s |")


if __name__ == "__main__":
    main()
