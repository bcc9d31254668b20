"""docs/spec.md is the spec reference, generated from the config docstrings; it must not drift."""

from __future__ import annotations

from pathlib import Path

from groklab.config import field_reference

SPEC_DOC = Path(__file__).resolve().parents[2] / "docs" / "spec.md"
HEADER = "# Spec reference\n\nGenerated from the docstrings in `src/groklab/config.py` (`groklab run --help` shows the same).\n\n"


def render() -> str:
    return (
        HEADER
        + "\n".join(f"- `{line.split(' ', 1)[0]}` {line.split(' ', 1)[1]}" for line in field_reference().splitlines())
        + "\n"
    )


def test_spec_doc_is_current() -> None:
    assert SPEC_DOC.read_text() == render(), "regenerate: python tests/unit/test_docs.py"


if __name__ == "__main__":
    SPEC_DOC.write_text(render())
