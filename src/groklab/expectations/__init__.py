"""What the sources report for each built-in experiment, checked against what a stored run measured.

Each check returns (measured, met): `measured` says the number, `met` is True/False, or None when the
experiment does not contain what the claim needs (e.g. a budget too short to reach it). Thresholds are
written into the claim text, so a reader sees exactly what was checked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from groklab.expectations.base import Check, Expectation, by_value, median, reached
from groklab.expectations.doshi import DOSHI
from groklab.store.reader import ExperimentResult

__all__ = ["EXPECTATIONS", "Expectation", "check"]


def _step_at_most(column: str, limit: float, what: str) -> Check:
    def check(result: ExperimentResult) -> tuple[str, bool | None]:
        value = median(result, column)
        if value is None:
            return f"no run {what}", False
        return f"median step {value:.0f} over {len(result.runs)} run(s)", value <= limit

    return check


def _first_step_below(result: ExperimentResult, column: str, level: float) -> float | None:
    """Median over runs of the first evaluated step where `column` < level."""
    metrics = result.metrics
    if column not in metrics:
        return None
    steps = []
    for _, frame in metrics.groupby("run_id"):
        below = frame[frame[column] < level]
        if len(below):
            steps.append(float(below["step"].iloc[0]))
    return float(np.median(steps)) if steps else None


def _nanda_test_loss(result: ExperimentResult) -> tuple[str, bool | None]:
    step = _first_step_below(result, "test_loss", 1.0)
    if step is None:
        return "test loss never fell below 1 in the budget", False
    return f"test loss < 1 first at step {step:.0f}", step <= 14_000


def _restricted_first(result: ExperimentResult) -> tuple[str, bool | None]:
    restricted = _first_step_below(result, "restricted_loss", 1.0)
    test = _first_step_below(result, "test_loss", 1.0)
    if restricted is None or test is None:
        return "restricted or test loss never below 1", None
    return f"restricted < 1 at step {restricted:.0f}, test < 1 at {test:.0f}", restricted < test


def _excluded_rises(result: ExperimentResult) -> tuple[str, bool | None]:
    metrics, memorized = result.metrics, median(result, "memorized_step")
    if "excluded_loss" not in metrics or memorized is None:
        return "no excluded loss stored or never memorized", None
    after = metrics[metrics["step"] >= memorized].dropna(subset=["excluded_loss"])
    start, peak = after["excluded_loss"].iloc[0], after["excluded_loss"].max()
    return f"excluded loss {start:.3g} at memorization, peak {peak:.3g}", peak > 10 * start


def _ipr_rises(result: ExperimentResult) -> tuple[str, bool | None]:
    metrics = result.metrics.dropna(subset=["neuron_ipr_mean"]) if "neuron_ipr_mean" in result.metrics else None
    if metrics is None or metrics.empty:
        return "no neuron IPR stored", None
    first = metrics.groupby("run_id")["neuron_ipr_mean"].first().median()
    last = metrics.groupby("run_id")["neuron_ipr_mean"].last().median()
    return f"mean neuron IPR {first:.3f} -> {last:.3f}", last > 3 * first


def _analytic(column: str, limit: float) -> Check:
    def check(result: ExperimentResult) -> tuple[str, bool | None]:
        value = median(result, column)
        if value is None:
            return "no analytic comparison stored", None
        return f"{column} = {value:.3f}", value >= limit

    return check


def _memorize_first(result: ExperimentResult) -> tuple[str, bool | None]:
    runs = result.runs.dropna(subset=["memorized_step", "generalized_step"])
    if runs.empty:
        return "no run both memorized and generalized", None
    earlier = (runs["memorized_step"] < runs["generalized_step"]).mean()
    return f"memorized before generalizing in {earlier:.0%} of {len(runs)} run(s)", bool(earlier == 1.0)


def _late_generalization(result: ExperimentResult) -> tuple[str, bool | None]:
    memorized, generalized = median(result, "memorized_step"), median(result, "generalized_step")
    if memorized is None or generalized is None:
        return "never memorized or never generalized", None
    return f"memorized at {memorized:.0f}, generalized at {generalized:.0f}", generalized >= 2 * memorized


def _threshold(key: str) -> Check:
    """The smallest swept value at which no run generalized; met if every smaller value generalized."""

    def check(result: ExperimentResult) -> tuple[str, bool | None]:
        steps = by_value(result, key, "generalized_step")
        if steps is None:
            return f"{key} not swept", None
        never = [v for v, s in steps.items() if s != s]
        counts = reached(result, key, "generalized_step")
        listing = ", ".join(f"{v:g}: {'never' if s != s else f'{s:.0f}'} ({counts[v]} runs)" for v, s in steps.items())
        if not never:
            return f"no threshold in the grid (median generalization step at {key} = {listing})", False
        below = steps[steps.index < min(never)]
        met = bool(below.notna().all() and len(below))
        return f"threshold {min(never):g} (median generalization step at {key} = {listing})", met

    return check


def _shorter_after_switch(result: ExperimentResult) -> tuple[str, bool | None]:
    delays = by_value(result, "optimizer.on_memorized.weight_decay", "grokking_delay")
    if delays is None or delays.isna().all():
        return "no run generalized", None
    base, best = delays.iloc[0], delays.iloc[1:].min()
    return f"delay {base:.0f} steps at w' = {delays.index[0]:g}, shortest {best:.0f} at a larger w'", bool(best < base)


def _flips_delay(result: ExperimentResult) -> tuple[str, bool | None]:
    steps = by_value(result, "task.label_noise", "generalized_step")
    if steps is None or steps.dropna().empty:
        return "no run generalized", None
    generalizing = steps.dropna()
    if len(generalizing) < 2:
        only = generalizing.index[0]
        return f"only p_t = {only:g} generalizes (median step {generalizing.iloc[0]:.0f}): nothing to compare", None
    first, last = generalizing.iloc[0], generalizing.iloc[-1]
    return (f"median generalization step {first:.0f} at p_t = {generalizing.index[0]:g}, {last:.0f} at p_t = "
            f"{generalizing.index[-1]:g}"), bool(last > first)  # fmt: skip


def _slingshots(result: ExperimentResult) -> tuple[str, bool | None]:
    """An observation, not a claim: the repo's TODO asks whether slingshots occur."""
    runs = result.runs
    spikes = sum(len(v) for v in runs.get("loss_spike_steps", pd.Series(dtype=object)) if isinstance(v, list))
    cycles = sum(len(v) for v in runs.get("norm_cycle_peak_steps", pd.Series(dtype=object)) if isinstance(v, list))
    return f"{spikes} train-loss spikes, {cycles} last-layer-norm cycles over {len(runs)} run(s)", None


def _final_test_below(limit: float) -> Check:
    def check(result: ExperimentResult) -> tuple[str, bool | None]:
        value = median(result, "final_test_acc")
        if value is None:
            return "no finished run", None
        return f"final test accuracy {value:.3f}", value < limit

    return check


SLINGSHOT = Expectation("slingshots: train-loss spikes with last-layer norm cycles (observed, not claimed)",
                        "seed 003 TODO; Thilak et al. 2022", _slingshots)  # fmt: skip

GROMOV = [
    Expectation(
        "train accuracy 100% within ~30 steps (checked: memorized by step 40)",
        "Gromov 2023",
        _step_at_most("memorized_step", 40, "memorized"),
    ),  # fmt: skip
    Expectation(
        "test accuracy 100% shortly after, ~45 steps (checked: generalized by step 100)",
        "Gromov 2023",
        _step_at_most("generalized_step", 100, "generalized"),
    ),  # fmt: skip
    Expectation(
        "the mean IPR of the neurons rises (checked: x3 from init to end)", "Gromov 2023; Doshi et al.", _ipr_rises
    ),  # fmt: skip
    Expectation("the analytic solution reaches 100% accuracy", "Gromov 2023", _analytic("analytic_acc", 1.0)),
    Expectation(
        "trained weights take the analytic solution's form (checked: phase_match >= 0.9)",
        "Gromov 2023",
        _analytic("phase_match", 0.9),
    ),  # fmt: skip
]
MEMORIZE_FIRST = Expectation("memorization precedes generalization", "seed 001; Barak et al. 2022", _memorize_first)

EXPECTATIONS: dict[str, list[Expectation]] = {
    "gromov-mlp": GROMOV,
    **DOSHI,
    "mlp-exp1": [
        Expectation(
            "the token MLP groks within 100k steps (checked: generalized by step 100,000)",
            "seed 003 (its exp1 plots)",
            _step_at_most("generalized_step", 100_000, "generalized"),
        ),  # fmt: skip
        SLINGSHOT,
    ],
    "mlp-exp2": [
        Expectation(
            "train accuracy 100% around epoch 110 (checked: memorized by epoch 200 = step 3,000)",
            "seed 003 (exp2 plots)",
            _step_at_most("memorized_step", 3000, "memorized"),
        ),  # fmt: skip
        Expectation(
            "validation accuracy 100% by ~6-7k epochs (checked: generalized by epoch 7,000 = step 105,000)",
            "seed 003 (exp2 plots)",
            _step_at_most("generalized_step", 105_000, "generalized"),
        ),  # fmt: skip
        SLINGSHOT,
    ],
    "mlp-exp3": [
        Expectation(
            "with labels 1 and 2 never seen, validation accuracy on them stays 0 (checked: final < 1%)",
            "seed 003 (exp3)",
            _final_test_below(0.01),
        ),  # fmt: skip
        SLINGSHOT,
    ],
    "parity-blog": [MEMORIZE_FIRST],
    "parity-wd-switch": [
        Expectation(
            "raising the weight decay at memorization shortens the time to generalize (checked: some "
            "larger w' has a shorter median delay than the smallest)",
            "seed 001, Hypothesis 1",
            _shorter_after_switch,
        ),  # fmt: skip
        Expectation(
            "beyond a threshold w', runs never generalize (checked: a w' in the grid where no run "
            "generalized, every smaller one generalizing)",
            "seed 001, Hypothesis 1",
            _threshold("optimizer.on_memorized.weight_decay"),
        ),  # fmt: skip
    ],
    "parity-label-flip": [
        Expectation(
            "flipped training labels delay generalization (checked: later at the largest p_t that "
            "generalizes than at the smallest)",
            "seed 001, Hypothesis 2",
            _flips_delay,
        ),  # fmt: skip
        Expectation(
            "beyond a threshold p_t, runs never generalize (checked: a p_t in the grid where no run "
            "generalized, every smaller one generalizing)",
            "seed 001, Hypothesis 2",
            _threshold("task.label_noise"),
        ),  # fmt: skip
    ],
    "modular-addition": GROMOV,
    "nanda-modadd": [
        Expectation(
            "memorization by ~1.4k epochs (checked: by step 1,400)",
            "Nanda et al. 2023",
            _step_at_most("memorized_step", 1400, "memorized"),
        ),  # fmt: skip
        Expectation(
            "test loss falls below 1 near 13-14k epochs (checked: by step 14,000)",
            "Nanda et al. 2023",
            _nanda_test_loss,
        ),  # fmt: skip
        Expectation(
            "restricted loss falls before test loss (checked: below 1 earlier)", "Nanda et al. 2023", _restricted_first
        ),  # fmt: skip
        Expectation(
            "excluded loss rises during circuit formation (checked: x10 above its value at memorization)",
            "Nanda et al. 2023",
            _excluded_rises,
        ),  # fmt: skip
    ],
    "power-division": [
        Expectation(
            "train accuracy ~100% within 1e3 steps (checked: memorized by step 1,000)",
            "Power et al. 2022",
            _step_at_most("memorized_step", 1000, "memorized"),
        ),  # fmt: skip
        Expectation(
            "validation accuracy reaches 100% much later (checked: generalized >= 2x memorized step)",
            "Power et al. 2022",
            _late_generalization,
        ),  # fmt: skip
    ],
    "parity": [MEMORIZE_FIRST],
}


def check(result: ExperimentResult) -> list[tuple[Expectation, str, bool | None]]:
    """Every expectation of the experiment's built-in name, with what was measured and whether it was met."""
    return [(e, *e.check(result)) for e in EXPECTATIONS.get(str(result.spec.get("name")), [])]
