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
one-line error before anything runs. The checks (generated from `src/groklab/expectations/`):

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
