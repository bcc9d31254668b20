"""Specs by name or path: the built-in experiments (groklab/experiments/*.yaml) and resolving a spec with its
quick variant and --set / --sweep overrides into a validated Experiment."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from groklab.config.experiment import Experiment, parse_experiment
from groklab.config.overrides import apply_overrides, load_yaml, set_dotted
from groklab.errors import SpecError
from groklab.experiments import builtin_specs


def resolve_spec(
    spec: str | Path | dict[str, Any] | Experiment,
    sets: list[str] | None = None,
    sweeps: list[str] | None = None,
    quick: bool = False,
) -> Experiment:
    """An Experiment from a built-in name, a YAML path, plain data or an Experiment, with overrides
    (the spec's `quick` variant first, when asked for, then --set and --sweep)."""
    if isinstance(spec, Experiment):
        data: dict[str, Any] = spec.model_dump(mode="json")
    elif isinstance(spec, dict):
        data = spec
    else:
        builtins = builtin_specs()
        path = builtins.get(str(spec), Path(spec))
        if not path.is_file() and str(spec) not in builtins and not str(spec).endswith((".yaml", ".yml")):
            names = ", ".join(sorted(builtins))
            raise SpecError(f"{spec}: no such spec file or built-in experiment (built-ins: {names})")
        data = load_yaml(path)
    if quick:
        data = _quick_variant(data, str(spec) if not isinstance(spec, (dict, Experiment)) else "spec")
    return parse_experiment(apply_overrides(data, sets, sweeps))


def _quick_variant(data: dict[str, Any], name: str) -> dict[str, Any]:
    overrides = data.get("quick") if isinstance(data, dict) else None
    if not overrides:
        raise SpecError(f"--quick: {name} has no quick variant (a `quick:` section of overrides)")
    data = copy.deepcopy(data)
    for key, value in overrides.items():
        if key.startswith("sweep."):
            data.setdefault("sweep", {})[key.removeprefix("sweep.")] = value
        else:
            set_dotted(data, key, value)
    return data
