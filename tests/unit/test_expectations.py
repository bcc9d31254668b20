"""The claim checks against hand-made results: failed runs count, thresholds; claims travel with the spec."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from groklab.config import SpecError, builtin_specs, parse_experiment
from groklab.expectations import CHECKS, check, validate_claims
from groklab.expectations.base import by_value, reached
from groklab.store.layout import METRICS_FILE
from groklab.store.reader import ExperimentResult

LABEL_FLIP = yaml.safe_load(builtin_specs()["parity-label-flip"].read_text())["claims"]


def _result(
    name: str, rows: list[tuple[float, int | None]], key: str = "task.label_noise", claims: list | None = None
) -> ExperimentResult:
    """Runs (swept value, generalized step); every run memorized at step 100."""
    return ExperimentResult(
        root=Path("."),
        spec={"name": name, "claims": LABEL_FLIP if claims is None else claims},
        meta={},
        rows=[
            {
                "run_id": f"run-{i:04d}",
                "seed": 0,
                "status": "completed",
                "steps": 5000,
                "memorized_step": 100,
                "generalized_step": step,
                "final": {"train_acc": 1.0, "test_acc": 1.0 if step else 0.5, "train_loss": 0.0, "test_loss": 1.0},
                "events": {"grokking_delay": None if step is None else step - 100},
                "analysis": {},
                "params": {key: value},
            }
            for i, (value, step) in enumerate(rows)
        ],
    )


def test_runs_that_never_generalize_count_in_the_median() -> None:
    result = _result("x", [(0.0, 1000), (0.0, 1200), (0.0, 1400), (0.1, None), (0.1, 3000), (0.1, None)])
    steps = by_value(result, "task.label_noise", "generalized_step")
    assert steps[0.0] == 1200 and steps[0.1] != steps[0.1]  # 1 of 3 is not a median: never
    assert reached(result, "task.label_noise", "generalized_step") == {0.0: "3/3", 0.1: "1/3"}


def test_label_flip_threshold_and_delay() -> None:
    grid = [(0.0, 1000), (0.0, 1100), (0.02, 2000), (0.02, 2500), (0.05, None), (0.05, None)]
    delay, threshold = check(_result("a-copy-under-another-name", grid))  # the claims come from the stored spec
    assert delay.claim == (
        "flipped training labels delay generalization (checked: median generalized_step later at the largest "
        "task.label_noise that generalizes than at the smallest)"
    )
    assert (delay.measured, delay.met) == ("median generalized_step 1050 at task.label_noise = 0, 2250 at 0.02", True)
    assert threshold.met is True and threshold.measured.startswith("threshold 0.05")
    # A value above the threshold that generalizes again breaks "every smaller value generalizes" only below it.
    _, threshold = check(_result("x", [(0.0, None), (0.1, 2000), (0.2, None)]))
    assert threshold.measured.startswith("threshold 0 ") and threshold.met is False
    # Nothing generalizes anywhere in the budget: there is no threshold to place, so no verdict.
    _, threshold = check(_result("x", [(0.0, None), (0.1, None)]))
    assert threshold.measured.startswith("no value of task.label_noise generalizes") and threshold.met is None
    assert check(_result("x", [(0.0, 1000), (0.1, None)]))[0].met is None  # nothing to compare


def test_a_stored_claim_with_an_unknown_check_is_reported_not_fatal() -> None:
    claims = [{"claim": "c", "source": "s", "check": "gone", "params": {}}]
    (verdict,) = check(_result("x", [(0.0, 1000)], claims=claims))
    assert (verdict.measured, verdict.met) == ("cannot be checked: unknown check 'gone'", None)


def test_a_spec_without_claims_checks_nothing() -> None:
    assert check(_result("parity-label-flip", [(0.0, 1000)], claims=[])) == []


def test_every_builtin_claim_names_a_check_with_fitting_parameters() -> None:
    for path in builtin_specs().values():
        validate_claims(parse_experiment(yaml.safe_load(path.read_text())))


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ({"check": "no_such_check"}, "claims.0.check: unknown check 'no_such_check'; allowed: "),
        (
            {"check": "step_at_most", "params": {"column": "memorized_step"}},
            "claims.0.params: check step_at_most needs limit",
        ),
        ({"check": "threshold", "params": {"key": "k", "limit": 3}}, "claims.0.params: unknown parameter(s) limit"),
    ],
)
def test_a_bad_claim_is_a_one_line_spec_error(claim: dict, message: str) -> None:
    experiment = parse_experiment({"claims": [{"claim": "c", "source": "s", **claim}]})
    with pytest.raises(SpecError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        validate_claims(experiment)


def _phases(rows: list[tuple[float, float, str | None, int | None]]) -> ExperimentResult:
    """Runs (lr, weight decay, liu_phase, rqi_step) of a hand-made phase diagram."""
    return ExperimentResult(
        root=Path("."),
        spec={"name": "x", "claims": []},
        meta={},
        rows=[
            {"run_id": f"run-{i:04d}", "seed": 0, "status": "completed", "steps": 1000, "final": {},
             "events": {"liu_phase": phase, "rqi_step": rqi}, "analysis": {},
             "params": {"optimizer.lr": lr, "optimizer.weight_decay": wd, "task.n_train": 10 * (i % 4 + 1)}}
            for i, (lr, wd, phase, rqi) in enumerate(rows)
        ],
    )  # fmt: skip


def test_phase_arrangement_reads_the_medians_of_each_phase() -> None:
    arrangement = CHECKS["phase_arrangement"].fn
    paper = [(1e-4, 0, "comprehension", None), (1e-5, 5, "grokking", None), (1e-2, 0, "memorization", None),
             (1e-2, 10, "confusion", None), (3e-3, 1, "memorization", None), (3e-3, 8, "confusion", None)]  # fmt: skip
    measured, met = arrangement(_phases(paper), lr="optimizer.lr", wd="optimizer.weight_decay")
    assert met is True and "memorization: optimizer.lr 0.0065, optimizer.weight_decay 0.5" in measured
    swapped = [(lr, 10 - wd if phase in ("memorization", "confusion") else wd, phase, s) for lr, wd, phase, s in paper]
    assert arrangement(_phases(swapped), lr="optimizer.lr", wd="optimizer.weight_decay")[1] is False
    fast_grokking = [(1e-1, wd, "grokking" if phase == "grokking" else phase, s) for _, wd, phase, s in paper]
    assert arrangement(_phases(fast_grokking), lr="optimizer.lr", wd="optimizer.weight_decay")[1] is False
    assert arrangement(_phases(paper[:3]), lr="optimizer.lr", wd="optimizer.weight_decay") == (
        "confusion absent (comprehension: optimizer.lr 0.0001, optimizer.weight_decay 0; grokking: optimizer.lr "
        "1e-05, optimizer.weight_decay 5; memorization: optimizer.lr 0.01, optimizer.weight_decay 0)",
        None,
    )


def test_critical_needs_never_below_and_always_from_it() -> None:
    critical = CHECKS["critical"].fn
    # task.n_train cycles 10, 20, 30, 40 over the rows; rqi_step None = never reached
    sharp = _phases([(0, 0, None, None), (0, 0, None, None), (0, 0, None, 900), (0, 0, None, 800)])
    measured, met = critical(sharp, key="task.n_train", column="rqi_step")
    assert met is True and measured.startswith("critical task.n_train 30")
    late = _phases([(0, 0, None, None), (0, 0, None, 700), (0, 0, None, None), (0, 0, None, 800)])
    assert critical(late, key="task.n_train", column="rqi_step")[1] is False  # reached at 20, not at 30
    always = _phases([(0, 0, None, 5), (0, 0, None, 700), (0, 0, None, 9), (0, 0, None, 800)])
    assert critical(always, key="task.n_train", column="rqi_step")[1] is False  # no value below it


def _curves(root: Path, runs: dict[str, tuple[str, int, dict[str, list[float]]]]) -> ExperimentResult:
    """Runs (variant, budget, curves over steps 0, 100, 200, ...) stored as the store keeps metrics."""
    rows = []
    for run_id, (variant, steps, curves) in runs.items():
        (root / "runs" / run_id).mkdir(parents=True)
        n = len(next(iter(curves.values())))
        pd.DataFrame({"step": [100 * i for i in range(n)], **curves}).to_parquet(root / "runs" / run_id / METRICS_FILE)
        rows.append({"run_id": run_id, "seed": 0, "status": "completed", "steps": steps, "memorized_step": None,
                     "generalized_step": None, "final": {}, "events": {}, "analysis": {},
                     "params": {"variant": variant}})  # fmt: skip
    return ExperimentResult(root=root, spec={"name": "x", "variants": {"a": {}}}, meta={}, rows=rows)


FASTER = {"variant": "fast", "baseline": "base", "column": "test_acc", "level": 0.95}


def test_faster_than_compares_with_the_baseline_measured_in_the_same_experiment(tmp_path: Path) -> None:
    faster = CHECKS["faster_than"].fn
    up = [0.1, 0.5, 0.96, 0.99, 0.99, 0.99, 0.99, 0.99]  # 95% at step 200
    late = [0.1] * 6 + [0.96, 0.99]  # at step 600: 3x later
    result = _curves(tmp_path / "a", {"r0": ("fast", 700, {"test_acc": up}), "r1": ("base", 700, {"test_acc": late})})
    measured, met = faster(result, **FASTER, factor=3.0)
    assert met is True and "3x" in measured
    assert faster(result, **FASTER, factor=4.0)[1] is False  # 3x is not 4x
    assert faster(result, **{**FASTER, "variant": "base", "baseline": "fast"})[1] is False  # slower, not faster
    never = [0.1] * 8
    lost = _curves(tmp_path / "b", {"r0": ("fast", 700, {"test_acc": up}), "r1": ("base", 700, {"test_acc": never})})
    measured, met = faster(lost, **FASTER, factor=3.0)  # the baseline is not there in 700 steps: >= 3.5x
    assert met is True and "base not there in 700 steps: >= 3.5x" in measured
    assert faster(lost, **FASTER, factor=10.0)[1] is None  # >= 3.5x cannot say whether it is 10x
    stuck = _curves(tmp_path / "c", {"r0": ("fast", 700, {"test_acc": never}), "r1": ("base", 700, {"test_acc": up})})
    assert faster(stuck, **FASTER)[1] is False


def test_agrees_throughout_looks_at_every_evaluation_not_only_the_last(tmp_path: Path) -> None:
    predicted = [0.1, 0.8, 0.9, 1.0]
    trained = [0.1, 0.33, 0.85, 1.0]  # far apart mid-training (0.80 vs 0.33), equal at the end
    result = _curves(tmp_path, {"r0": ("a", 300, {"predicted_acc": predicted, "test_acc": trained})})
    params = {"column": "predicted_acc", "other": "test_acc", "tolerance": 0.05}
    assert CHECKS["agrees"].fn(result, **params)[1] is True  # the final step alone says they agree
    measured, met = CHECKS["agrees_throughout"].fn(result, **params)
    assert met is False and "0.80 vs test_acc 0.33 at step 100" in measured


def test_the_leaderboard_ranks_each_variant_at_its_best_setting(tmp_path: Path) -> None:
    """Two variants on a grid of two learning rates, two seeds each: each is ranked at the lr where its median
    run gets there first, a seed that never does counts as late, and both compare at their own best lr."""
    at = {200: [0.1, 0.5, 0.99, 0.99, 0.99], 300: [0.1, 0.5, 0.9, 0.99, 0.99], None: [0.1] * 5}
    runs = {"r0": ("a", 0.01, 200), "r1": ("a", 0.01, 300), "r2": ("a", 0.1, None), "r3": ("a", 0.1, 200),
            "r4": ("b", 0.01, None), "r5": ("b", 0.01, None), "r6": ("b", 0.1, 300), "r7": ("b", 0.1, 300)}  # fmt: skip
    result = _curves(tmp_path, {run_id: (variant, 500, {"test_acc": at[step]}) for run_id, (variant, _, step) in
                                runs.items()})  # fmt: skip
    for row, (_, lr, _) in zip(result.rows, runs.values()):
        row["params"]["optimizer.lr"] = lr
    result.spec["sweep"] = {"optimizer.lr": [0.01, 0.1]}
    best = result.at_best_setting("test_acc", 0.99)
    assert sorted(best["run_id"]) == ["r0", "r1", "r6", "r7"]  # a at lr 0.01 (250), b at lr 0.1 (300)
    measured, met = CHECKS["leaderboard"].fn(result, column="test_acc", level=0.99)
    assert met is None and measured.startswith("1. a (lr 0.01): 250 [225-275] 2/2; 2. b (lr 0.1): 300")
    assert CHECKS["faster_than"].fn(result, variant="a", baseline="b", column="test_acc", level=0.99)[1] is True
    from groklab.figures import applicable, plot

    assert "race" not in applicable(result)  # no leaderboard claim: not a race
    result.spec["claims"] = [{"claim": "c", "source": "s", "check": "leaderboard",
                              "params": {"column": "test_acc", "level": 0.99}}]  # fmt: skip
    assert "race" in applicable(result) and plot(result, ["race"])["race"].axes


def test_variant_ends_higher_compares_two_variants_of_one_experiment(tmp_path: Path) -> None:
    result = _curves(tmp_path, {"r0": ("clock", 300, {"q": [0.5, 0.9]}), "r1": ("pizza", 300, {"q": [0.5, 0.2]})})
    assert CHECKS["variant_ends_higher"].fn(result, variant="clock", other="pizza", column="q")[1] is True
    assert CHECKS["variant_ends_higher"].fn(result, variant="pizza", other="clock", column="q")[1] is False
    assert CHECKS["variant_ends_higher"].fn(result, variant="nope", other="clock", column="q")[1] is None


def test_every_variant_ends_above_names_the_lowest_variant(tmp_path: Path) -> None:
    result = _curves(tmp_path, {"r0": ("clock", 300, {"c": [0.5, 0.99]}), "r1": ("pizza", 300, {"c": [0.5, 0.62]}),
                                "r2": ("pizza", 300, {"c": [0.5, 0.98]})})  # fmt: skip
    measured, met = CHECKS["every_variant_ends_above"].fn(result, column="c", limit=0.9)
    assert met is False and measured.endswith("lowest: pizza") and "pizza: 0.8" in measured
    assert CHECKS["every_variant_ends_above"].fn(result, column="c", limit=0.75)[1] is True
    assert CHECKS["every_variant_ends_above"].fn(result, column="nope", limit=0.75)[1] is None


def test_ends_higher_where_compares_the_labelled_runs_with_the_rest(tmp_path: Path) -> None:
    result = _curves(tmp_path, {"r0": ("", 300, {"traps": [0.0, 2.0]}), "r1": ("", 300, {"traps": [0.0, 3.0]}),
                                "r2": ("", 300, {"traps": [0.0, 0.0]})})  # fmt: skip
    for row, phase in zip(result.rows, ["memorization", "memorization", "full inversion"]):
        row["events"] = {"doshi_phase": phase}
    measured, met = CHECKS["ends_higher_where"].fn(result, column="traps", key="doshi_phase", value="memorization")
    assert met is True and measured.endswith("2 run(s) 2.5, the other 1 0")
    assert CHECKS["ends_higher_where"].fn(result, column="traps", key="doshi_phase", value="full inversion")[1] is False
    assert CHECKS["ends_higher_where"].fn(result, column="traps", key="doshi_phase", value="forgetting")[1] is None


def test_later_toward_counts_never_as_the_latest_and_fails_the_other_way() -> None:
    key = "task.kwargs.n_train"
    edge = _result("x", [(133, 200), (133, 300), (100, 9000), (89, None), (80, None)], key=key)
    measured, met = CHECKS["later_toward"].fn(edge, key=key, column="generalized_step", toward="smaller")
    assert met is True and "80: never, 89: never, 100: 9,000, 133: 250" in measured
    assert CHECKS["later_toward"].fn(edge, key=key, column="generalized_step", toward="larger")[1] is False
    back = _result("x", [(133, 200), (100, 9000), (89, 5000)], key=key)  # sooner again at 89: not ever later
    assert CHECKS["later_toward"].fn(back, key=key, column="generalized_step")[1] is False


def test_moves_toward_compares_the_distance_at_memorization_and_at_the_end(tmp_path: Path) -> None:
    result = _curves(tmp_path, {"r0": ("", 300, {"alpha": [9.0, 6.0, 4.0, 2.5]}),
                                "r1": ("", 300, {"alpha": [9.0, 5.0, 3.0, 1.8]})})  # fmt: skip
    for row in result.rows:
        row["memorized_step"] = 100
    measured, met = CHECKS["moves_toward"].fn(result, column="alpha", target=2.0)
    assert met is True and measured == "alpha 5.5 at memorization, 2.15 at the end (target 2)"
    assert CHECKS["moves_toward"].fn(result, column="alpha", target=8.0)[1] is False


def test_appears_with_generalization_allows_one_evaluation_of_lag(tmp_path: Path) -> None:
    result = _curves(tmp_path, {"r0": ("", 500, {"syn": [0.0, 0.0, -0.5, -2.0, -3.0]}),
                                "r1": ("", 500, {"syn": [0.0, 0.0, 0.0, -0.5, -2.0]})})  # fmt: skip
    result.spec["train"] = {"eval_every": 100}
    for row, (memorized, generalized) in zip(result.rows, [(100, 200), (100, 200)]):
        row["memorized_step"], row["generalized_step"] = memorized, generalized
    measured, met = CHECKS["appears_with_generalization"].fn(result, column="syn", level=-0.1)
    assert met is True and "200 (memorized 100, generalized 200); 300 (memorized 100" in measured
    result.spec["train"] = {"eval_every": 50}  # r1's synergy, at 300, is now two evaluations late
    assert CHECKS["appears_with_generalization"].fn(result, column="syn", level=-0.1)[1] is False
    result.rows[0]["memorized_step"] = 250  # r0's appears before it memorized: too early
    result.spec["train"] = {"eval_every": 100}
    assert CHECKS["appears_with_generalization"].fn(result, column="syn", level=-0.1)[1] is False


def test_stays_below_reads_every_evaluation_from_its_start(tmp_path: Path) -> None:
    result = _curves(tmp_path, {"r0": ("", 300, {"train_loss": [0.7, 1e-12, 1e-9, 1e-11]}),
                                "r1": ("", 300, {"train_loss": [0.7, 1e-12, 1e-3, 1e-11]})})  # fmt: skip
    measured, met = CHECKS["stays_below"].fn(result, column="train_loss", level=1e-6)
    assert met is False and "largest train_loss from step 1: 0.0005" in measured  # the median of 1e-9 and 1e-3
    assert CHECKS["stays_below"].fn(result, column="train_loss", level=1e-2)[1] is True
    assert CHECKS["stays_below"].fn(result, column="train_loss", level=1.0, start=0)[1] is True
    assert CHECKS["stays_below"].fn(result, column="train_loss", level=0.5, start=0)[1] is False


def test_shortens_counts_never_at_the_smallest_value_as_the_longest_delay() -> None:
    never_first = _result("x", [(0.0, None), (0.0, None), (0.1, 3000), (0.1, 3200)], key="optimizer.weight_decay")
    measured, met = CHECKS["shortens"].fn(never_first, key="optimizer.weight_decay", column="generalized_step")
    assert met is True and "never at optimizer.weight_decay = 0" in measured
    never_after = _result("x", [(0.0, 3000), (0.1, None)], key="optimizer.weight_decay")
    assert CHECKS["shortens"].fn(never_after, key="optimizer.weight_decay", column="generalized_step")[1] is False
