"""Pieces every config module shares: strict pydantic settings, the Spec base class, the one-line user error."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

STRICT = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True, allow_inf_nan=False)
"""Unknown keys are errors; numbers are finite (no .inf / .nan anywhere, nested values included);
attribute docstrings become field descriptions (the spec reference)."""


class Spec(BaseModel):
    """Base of every spec section: strict settings, and true/false never accepted where a number is meant
    (pydantic would read `lr: true` as 1)."""

    model_config = STRICT

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        for key, value in data.items() if isinstance(data, dict) else ():
            field = cls.model_fields.get(key)
            if field is not None and not _admits_bool(field.annotation) and _contains_bool(value):
                raise ValueError(f"{key}: {value!r} holds true/false where a number or a name is expected")
        return data


def _admits_bool(annotation: Any) -> bool:
    """Whether a type annotation accepts a bool anywhere (bool itself, Any, or inside a union/container)."""
    if annotation is bool or annotation is Any:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        return any(_admits_bool(arg) for arg in typing.get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)  # checked field by field inside


def _contains_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(_contains_bool(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_bool(v) for v in value.values())
    return False
