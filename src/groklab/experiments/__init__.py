"""The built-in experiments: one YAML spec each in this folder (`groklab list`, `groklab run NAME`)."""

from __future__ import annotations

from pathlib import Path


def builtin_specs() -> dict[str, Path]:
    """Built-in experiment name -> its YAML file."""
    return {path.stem: path for path in Path(__file__).parent.glob("*.yaml")}
