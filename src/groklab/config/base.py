"""Pieces every config module shares: strict pydantic settings and the one-line user error."""

from __future__ import annotations

from pydantic import ConfigDict

STRICT = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)
"""Unknown keys are errors; attribute docstrings become field descriptions (the spec reference)."""


class SpecError(ValueError):
    """A spec the user wrote is wrong; the message is one line naming the key and what is allowed."""
