"""Thilak et al. 2022's claims: generalization comes at the onset of a slingshot, and Adam's epsilon suppresses
slingshots (curve_events.slingshots reads the onsets off each run's train loss and last-layer norm)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from groklab.expectations.base import Outcome, check
from groklab.store.reader import ExperimentResult


def _onsets(value: object) -> list[int]:
    return list(value) if isinstance(value, list) else []


@check("generalizes_at_slingshot", "every run that generalized did so at most {within:,} steps after a slingshot onset")
def generalizes_at_slingshot(result: ExperimentResult, within: int) -> Outcome:
    """Generalization happens at the onset of a slingshot: in each run that generalized, the last slingshot onset
    at or before its generalized_step lies at most `within` steps before it (a run that generalized with no
    slingshot before counts against the claim)."""
    runs = result.runs
    if "slingshot_steps" not in runs:
        return "no slingshot_steps stored (the weight_norms measure gives the last-layer norm)", None
    generalized = runs.dropna(subset=["generalized_step"])
    if generalized.empty:
        return f"no run generalized ({len(runs)} runs)", None
    gaps, spacings = [], []
    for onsets, step in zip(generalized["slingshot_steps"], generalized["generalized_step"]):
        earlier = [s for s in _onsets(onsets) if s <= step]
        gaps.append(step - max(earlier) if earlier else None)
        spacings += list(np.diff(_onsets(onsets)))
    listing = ", ".join("no slingshot before" if g is None else f"{g:,}" for g in gaps)
    close = sum(g is not None and g <= within for g in gaps)
    # Slingshots recur: with onsets every ~S steps, a step taken at random is within W steps after one with
    # probability ~W / S. The spacing says how much "within" means.
    chance = f"; onsets {np.median(spacings):,.0f} steps apart (median)" if spacings else ""
    measured = f"{close} of {len(gaps)} generalized run(s); steps after the last onset: {listing}{chance}"
    return measured, bool(close == len(gaps))


@check(
    "slingshots_vanish",
    "the median slingshot count is > 0 at the smallest {key}, never rises with it, and is 0 from some {key} on",
)
def slingshots_vanish(result: ExperimentResult, key: str) -> Outcome:
    """Raising a swept key (Adam's eps) makes slingshots fewer, then none."""
    runs = result.runs
    if key not in runs or "slingshot_steps" not in runs:
        return f"{key} not swept, or no slingshot_steps stored", None
    counts = runs.assign(n=[len(_onsets(v)) for v in runs["slingshot_steps"]]).groupby(key)["n"].median()
    listing = ", ".join(f"{v:g}: {n:g}" for v, n in counts.items())
    values = counts.to_numpy()
    falling = bool((pd.Series(values).diff().dropna() <= 0).all())
    met = values[0] > 0 and falling and values[-1] == 0
    return f"median slingshots at {key} = {listing}", bool(met)


@check("generalize_with_slingshots", "every run with slingshots ends with a higher {column} than every run without")
def generalize_with_slingshots(result: ExperimentResult, column: str = "final_test_acc") -> Outcome:
    """Generalization is absent without slingshots: over a grid where some runs have slingshots and some none
    (e.g. over Adam's eps), the runs without end less general, also where no run reaches 99%."""
    runs = result.runs
    if "slingshot_steps" not in runs or column not in runs:
        return f"no slingshot_steps or {column} stored", None
    has = pd.Series([bool(_onsets(v)) for v in runs["slingshot_steps"]], index=runs.index)
    with_, without = runs.loc[has, column].astype(float), runs.loc[~has, column].astype(float)
    if with_.empty or without.empty:
        return f"{len(with_)} run(s) with slingshots, {len(without)} without: nothing to compare", None
    measured = (f"{column} {with_.min():.3f}-{with_.max():.3f} in the {len(with_)} run(s) with slingshots, "
                f"{without.min():.3f}-{without.max():.3f} in the {len(without)} without")  # fmt: skip
    return measured, bool(with_.min() > without.max())
