"""Checks of claims any grokking experiment can make: when runs memorize and generalize, how a curve
moves, how a swept key changes generalization, and where it stops generalizing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from groklab.expectations.base import Outcome, by_value, check, first_step_below, median, reached
from groklab.store.reader import ExperimentResult


@check("step_at_most", "median {column} <= {limit:,}")
def step_at_most(result: ExperimentResult, column: str, limit: float) -> Outcome:
    """A per-run step (memorized_step, generalized_step, ...) comes early enough, in the median run."""
    value = median(result, column)
    if value is None:
        return f"no run has a {column}", False
    return f"median step {value:.0f} over {len(result.runs)} run(s)", value <= limit


@check("median_at_least", "median {column} >= {limit:g}")
def median_at_least(result: ExperimentResult, column: str, limit: float) -> Outcome:
    """A per-run number (an analysis scalar, a final accuracy) is at least `limit` in the median run."""
    value = median(result, column)
    if value is None:
        return f"no {column} stored", None
    return f"{column} = {value:.3f}", value >= limit


@check("median_below", "median {column} < {limit:g}")
def median_below(result: ExperimentResult, column: str, limit: float) -> Outcome:
    """A per-run number stays below `limit` in the median run."""
    value = median(result, column)
    if value is None:
        return f"no {column} stored", None
    return f"{column} = {value:.3f}", value < limit


@check("first_below_by", "{column} < {level:g} first by step {limit:,}")
def first_below_by(result: ExperimentResult, column: str, level: float, limit: float) -> Outcome:
    """A metric curve (e.g. test_loss) first falls below `level` by step `limit`."""
    step = first_step_below(result, column, level)
    if step is None:
        return f"{column} never fell below {level:g} in the budget", False
    return f"{column} < {level:g} first at step {step:.0f}", step <= limit


@check("falls_first", "{column} below {level:g} before {other}")
def falls_first(result: ExperimentResult, column: str, other: str, level: float) -> Outcome:
    """One curve (e.g. restricted_loss) falls below `level` strictly before another (e.g. test_loss)."""
    first, second = first_step_below(result, column, level), first_step_below(result, other, level)
    if first is None or second is None:
        return f"{column} or {other} never below {level:g}", None
    return f"{column} < {level:g} at step {first:.0f}, {other} < {level:g} at {second:.0f}", first < second


@check("rises_after_memorization", "{column} peaks above x{factor:g} its value at memorization")
def rises_after_memorization(result: ExperimentResult, column: str, factor: float) -> Outcome:
    """A curve (e.g. excluded_loss) rises after memorization to `factor` times its value there."""
    metrics, memorized = result.metrics, median(result, "memorized_step")
    if column not in metrics or memorized is None:
        return f"no {column} stored or never memorized", None
    after = metrics[metrics["step"] >= memorized].dropna(subset=[column])
    start, peak = after[column].iloc[0], after[column].max()
    return f"{column} {start:.3g} at memorization, peak {peak:.3g}", peak > factor * start


@check("stays_below", "median over runs of the largest {column} from step {start:,} on < {level:g}")
def stays_below(result: ExperimentResult, column: str, level: float, start: int = 1) -> Outcome:
    """A curve stays low all along (e.g. a kernel machine's training loss, ~0 at every iteration), not only at the
    end: the largest value at the evaluations from `start` on, median over runs."""
    metrics = result.metrics.dropna(subset=[column]) if column in result.metrics else None
    if metrics is None or (metrics := metrics[metrics["step"] >= start]).empty:
        return f"no {column} stored from step {start}", None
    largest = float(metrics.groupby("run_id")[column].max().median())
    return f"largest {column} from step {start:,}: {largest:.3g}", largest < level


@check("rises", "median final {column} > x{factor:g} its first value")
def rises(result: ExperimentResult, column: str, factor: float) -> Outcome:
    """A measured curve (e.g. neuron_ipr_mean) ends `factor` times higher than it starts, in the median run."""
    metrics = result.metrics.dropna(subset=[column]) if column in result.metrics else None
    if metrics is None or metrics.empty:
        return f"no {column} stored", None
    first = metrics.groupby("run_id")[column].first().median()
    last = metrics.groupby("run_id")[column].last().median()
    return f"{column} {first:.3f} -> {last:.3f}", last > factor * first


def _around_memorization(result: ExperimentResult, column: str) -> list[tuple[float, float, float]]:
    """(first, at memorization, last) value of a measured column in each run that memorized: at memorization is the
    first evaluation at or after memorized_step."""
    runs, values = result.runs.set_index("run_id"), []
    for run_id, frame in result.metrics.dropna(subset=[column]).groupby("run_id"):
        memorized = runs.loc[run_id, "memorized_step"]
        if pd.isna(memorized) or not (at := frame.loc[frame["step"] >= memorized, column]).size:
            continue
        values.append((float(frame[column].iloc[0]), float(at.iloc[0]), float(frame[column].iloc[-1])))
    return values


@check("rises_by_memorization", "median {column} at memorization > x{factor:g} its first value")
def rises_by_memorization(result: ExperimentResult, column: str, factor: float) -> Outcome:
    """A measure (e.g. the llc) has risen by the time the run memorizes: its value at the first evaluation at or
    after memorized_step against its first value, medians over the runs that memorized."""
    if column not in result.metrics:
        return f"no {column} stored", None
    if not (values := _around_memorization(result, column)):
        return "no run memorized", None
    first, at_memorization = (float(np.median([v[i] for v in values])) for i in (0, 1))
    return f"{column} {first:.4g} at the start, {at_memorization:.4g} at memorization", at_memorization > factor * first


@check("moves_toward", "median |final {column} - {target:g}| < median |{column} at memorization - {target:g}|")
def moves_toward(result: ExperimentResult, column: str, target: float) -> Outcome:
    """A measure heads for a value as the run groks (e.g. a layer's HTSR alpha toward 2): its distance from
    `target` at the last evaluation against at the first evaluation at or after memorized_step, medians over the
    runs that memorized."""
    if column not in result.metrics:
        return f"no {column} stored", None
    if not (values := _around_memorization(result, column)):
        return "no run memorized", None
    start, end = (float(np.median([v[i] for v in values])) for i in (1, 2))
    before, after = (float(np.median([abs(v[i] - target) for v in values])) for i in (1, 2))
    return f"{column} {start:.3g} at memorization, {end:.3g} at the end (target {target:g})", after < before


@check("appears_with_generalization", "{column} < {level:g} first after memorization, within one evaluation of "
       "generalization, in most runs")  # fmt: skip
def appears_with_generalization(result: ExperimentResult, column: str, level: float) -> Outcome:
    """A signal that emerges with generalization (e.g. Clauw et al.'s synergy): the first evaluation where the column
    falls below `level` comes after memorized_step and no later than one evaluation (train.eval_every, the events'
    own resolution) after generalized_step. Each run is judged; met when more than half of them are."""
    runs, metrics = result.runs.set_index("run_id"), result.metrics
    if column not in metrics:
        return f"no {column} stored", None
    every = (result.spec.get("train") or {}).get("eval_every")
    grace = every if isinstance(every, int) else 0
    verdicts, shown = [], []
    for run_id, frame in metrics.dropna(subset=[column]).groupby("run_id"):
        memorized, generalized = runs.loc[run_id, "memorized_step"], runs.loc[run_id, "generalized_step"]
        if pd.isna(memorized) or pd.isna(generalized):
            continue
        below = frame.loc[frame[column] < level, "step"]
        first = float(below.iloc[0]) if len(below) else np.inf
        verdicts.append(bool(memorized < first <= generalized + grace))
        shown.append(f"{'never' if first == np.inf else f'{first:,.0f}'} (memorized {memorized:,}, generalized "
                     f"{generalized:,})")  # fmt: skip
    if not verdicts:
        return "no run both memorized and generalized", None
    return f"{column} < {level:g} first at: {'; '.join(shown)}", sum(verdicts) > len(verdicts) / 2


@check("memorizes_first", "memorized_step < generalized_step in every run that did both")
def memorizes_first(result: ExperimentResult) -> Outcome:
    """Memorization precedes generalization."""
    runs = result.runs.dropna(subset=["memorized_step", "generalized_step"])
    if runs.empty:
        return "no run both memorized and generalized", None
    earlier = (runs["memorized_step"] < runs["generalized_step"]).mean()
    return f"memorized before generalizing in {earlier:.0%} of {len(runs)} run(s)", bool(earlier == 1.0)


@check("generalizes_late", "median generalized_step >= {factor:g} x median memorized_step")
def generalizes_late(result: ExperimentResult, factor: float) -> Outcome:
    """Generalization comes much later than memorization (grokking)."""
    memorized, generalized = median(result, "memorized_step"), median(result, "generalized_step")
    if memorized is None or generalized is None:
        return "never memorized or never generalized", None
    return f"memorized at {memorized:.0f}, generalized at {generalized:.0f}", generalized >= factor * memorized


@check("threshold", "a value of {key} in the grid where no run generalized, every smaller one generalizing")
def threshold(result: ExperimentResult, key: str) -> Outcome:
    """Beyond a threshold value of a swept key, runs never generalize (no verdict when no value generalizes)."""
    steps = by_value(result, key, "generalized_step")
    if steps is None:
        return f"{key} not swept", None
    never = [v for v, s in steps.items() if s != s]
    counts = reached(result, key, "generalized_step")
    listing = ", ".join(f"{v:g}: {'never' if s != s else f'{s:.0f}'} ({counts[v]} runs)" for v, s in steps.items())
    if not never:
        return f"no threshold in the grid (median generalization step at {key} = {listing})", False
    if len(never) == len(steps):  # nothing generalizes at all: no threshold to place within this budget
        return f"no value of {key} generalizes (median generalization step at {key} = {listing})", None
    below = steps[steps.index < min(never)]
    met = bool(below.notna().all() and len(below))
    return f"threshold {min(never):g} (median generalization step at {key} = {listing})", met


@check("shortens", "some larger {key} has a shorter median {column} than the smallest")
def shortens(result: ExperimentResult, key: str, column: str) -> Outcome:
    """Raising a swept key shortens a per-run delay (e.g. grokking_delay)."""
    delays = by_value(result, key, column)
    if delays is None or delays.isna().all():
        return "no run generalized", None
    base, best = delays.iloc[0], delays.iloc[1:].min()
    shown = "never" if base != base else f"{base:.0f}"
    if best != best:  # no larger value got there: nothing was shortened
        return f"{column} {shown} at {key} = {delays.index[0]:g}, never at a larger value", False
    # The smallest value never getting there (NaN) is the longest delay of all: any larger value that does shortens it.
    return f"{column} {shown} at {key} = {delays.index[0]:g}, shortest {best:.0f} at a larger value", bool(
        base != base or best < base
    )


@check("delays", "median {column} later at the largest {key} that generalizes than at the smallest")
def delays(result: ExperimentResult, key: str, column: str = "generalized_step") -> Outcome:
    """Raising a swept key delays an event (e.g. generalization)."""
    steps = by_value(result, key, column)
    if steps is None or steps.dropna().empty:
        return "no run generalized", None
    generalizing = steps.dropna()
    if len(generalizing) < 2:
        only = generalizing.index[0]
        return f"only {key} = {only:g} generalizes (median step {generalizing.iloc[0]:.0f}): nothing to compare", None
    first, last = generalizing.iloc[0], generalizing.iloc[-1]
    return (f"median {column} {first:.0f} at {key} = {generalizing.index[0]:g}, {last:.0f} at "
            f"{generalizing.index[-1]:g}"), bool(last > first)  # fmt: skip


@check("phases_appear", "each of {phases} labels at least one run ({column})")
def phases_appear(result: ExperimentResult, phases: list[str], column: str = "doshi_phase") -> Outcome:
    """The phases of a per-run label all appear over the grid: Doshi et al.'s (doshi_phase), or Liu et al.'s
    (liu_phase)."""
    labelled = result.runs.get(column, pd.Series(dtype=object)).dropna()
    if labelled.empty:
        return "no labelled runs", None
    counts = labelled.value_counts()
    listing = ", ".join(f"{p}: {n}" for p, n in counts.items())
    return f"{listing} (of {len(labelled)} runs)", all(p in counts for p in phases)


@check("slingshots", "an observation, not a pass/fail check")
def slingshots(result: ExperimentResult) -> Outcome:
    """Counts train-loss spikes, the slingshots among them (Thilak et al.: the last-layer norm rises fast across
    the spike, then plateaus) and last-layer norm cycles (a rise, then a fall)."""
    runs = result.runs

    def total(column: str) -> int:
        return sum(len(v) for v in runs.get(column, pd.Series(dtype=object)) if isinstance(v, list))

    return (f"{total('loss_spike_steps')} train-loss spikes, {total('slingshot_steps')} slingshots, "
            f"{total('norm_cycle_peak_steps')} last-layer-norm cycles over {len(runs)} run(s)"), None  # fmt: skip
