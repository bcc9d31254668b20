"""docs/spec.md and docs/claims.md are generated from the config docstrings and the registered checks; they
must not drift. Regenerate both with `python tests/unit/test_docs.py`."""

from __future__ import annotations

from pathlib import Path

import yaml

from groklab.config import field_reference, parse_experiment
from groklab.expectations import claims_reference, validate_claims

DOCS = Path(__file__).resolve().parents[2] / "docs"
SPEC_HEADER = (
    "# Spec reference\n\nGenerated from the attribute docstrings in `src/groklab/config/` "
    "(`groklab spec [KEY]` shows the same).\n\n"
)
CLAIMS_HEADER = """# Writing claims

A spec's `claims:` list says what a source reports about the experiment; `groklab report` checks each claim
against the stored runs and prints met / not met / n/a with the number it measured. The claims travel with
the spec: a copy of a built-in under another name keeps them. Each claim names a check and its parameters,
and the sentence a reader sees is the claim followed by the check's condition filled in from the
parameters, so each threshold is written once:

```yaml
claims:
  - claim: train accuracy 100% within about 30 steps      # the source's words
    source: Gromov 2023
    check: step_at_most
    params: {column: memorized_step, limit: 40}           # shown as "median memorized_step <= 40"
```

`column` names a per-run column of `groklab.load(DIR).runs` (memorized_step, generalized_step, final_test_acc,
an event such as grokking_delay, an analysis scalar such as phase_match) or, for curve checks, a metrics column
(test_loss, restricted_loss, neuron_ipr_mean, ...); `key` a swept spec key. An unknown check or parameter is a
one-line error before anything runs.

## How a check can fail

Every verdict is one of three: met, not met, or n/a. n/a means the stored runs cannot decide the claim: no run
measured the column, the key was not swept, the variant is missing, or the check is an observation. A claim is
never called met on numbers it did not measure. By family:

- **Thresholds** (`step_at_most`, `median_at_least`, `median_below`, `variant_reaches_by`, `variant_ends_above` /
  `_below`, ...) read the median run.
  - A run that never reached an event counts as infinitely late, so a median of mostly "never" is never, and the
    claim is not met.
  - A threshold is written once, in the spec's params. It is the source's number or a stated reading of it, never
    tuned to the runs.
- **Comparisons within one experiment** (`faster_than`, `shortens`, `delays`, `variant_ends_higher`, `critical`,
  `threshold`, ...) measure both sides here.
  - They fail when the order is the other way.
  - `faster_than` compares each variant at its best swept setting. A baseline that never gets there bounds the
    speed-up from below: met only if that bound already reaches the factor, else n/a.
  - A comparison is never made against a number from another paper's setup.
- **Trajectories** (`agrees_throughout`, `falls_first`, `rises_after_memorization`, `descends_twice`, ...) look
  along the curves, not only at the last step. The widest gap or the first crossing is what they report.
- **Observations** (`steps_to_level`, `leaderboard`, `critical_size`) are never met or not met. They report the
  numbers a reader needs to judge the claim.

The checks (generated from `src/groklab/expectations/`):

"""


def render_spec() -> str:
    lines = field_reference().splitlines()
    return SPEC_HEADER + "\n".join(f"- `{line.split(' ', 1)[0]}` {line.split(' ', 1)[1]}" for line in lines) + "\n"


def render_claims() -> str:
    return CLAIMS_HEADER + claims_reference() + "\n"


def test_spec_doc_is_current() -> None:
    assert (DOCS / "spec.md").read_text() == render_spec(), "regenerate: python tests/unit/test_docs.py"


def test_claims_doc_is_current() -> None:
    assert (DOCS / "claims.md").read_text() == render_claims(), "regenerate: python tests/unit/test_docs.py"


def test_the_readme_spec_is_a_valid_spec_with_valid_claims() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    block = readme.split("## A spec", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    experiment = parse_experiment(yaml.safe_load(block))
    validate_claims(experiment)
    assert experiment.claims[0].params == {"column": "memorized_step", "limit": 40}


if __name__ == "__main__":
    (DOCS / "spec.md").write_text(render_spec())
    (DOCS / "claims.md").write_text(render_claims())
