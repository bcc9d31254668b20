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
from groklab.factories import add_folder


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
        add_folder(path.parent)  # a factory the spec names may live beside it
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


RENAMED = {
    "measures.checkpoint_steps": "measures.snapshot_steps",
    "measures.sparsity_threshold": "measures.weight_sparsity.threshold",
    "measures.large_neuron_fraction": "measures.large_neurons.fraction",
    "measures.key_frequencies": "measures.restricted_excluded.key_frequencies",
    "measures.n_key_frequencies": "measures.restricted_excluded.n_key_frequencies",
    "measures.rqi_delta": "measures.rqi.delta",
    "measures.representation_steps": "measures.representations.steps",
    "measures.representation_inputs": "measures.representations.inputs",
    "measures.ntk_examples": "measures.ntk.examples",
    "measures.llc_lr": "measures.llc.lr",
    "measures.llc_nbeta": "measures.llc.nbeta",
    "measures.llc_gamma": "measures.llc.gamma",
    "measures.llc_draws": "measures.llc.draws",
    "measures.llc_batch_size": "measures.llc.batch_size",
    "measures.prune_points": "measures.ipr_pruning.points",
}
"""Spec keys renamed since experiments were first stored: old dotted key -> new one."""


def upgrade(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored spec with its keys as this version names them (RENAMED): in its sections, in its sweep, and in its
    variants, so that an experiment stored by an earlier version reads and resumes.

    >>> upgrade({"measures": {"llc_lr": 0.01}, "sweep": {"measures.checkpoint_steps": [2, 4]}})
    {'measures': {'llc': {'lr': 0.01}}, 'sweep': {'measures.snapshot_steps': [2, 4]}}
    """
    spec = copy.deepcopy(spec)
    for old, new in RENAMED.items():
        *path, key = old.split(".")
        section: Any = spec
        for part in path:
            section = section.get(part) if isinstance(section, dict) else None
        if isinstance(section, dict) and key in section:
            set_dotted(spec, new, section.pop(key))
        variants = spec.get("variants")
        for overrides in [spec.get("sweep"), *(variants.values() if isinstance(variants, dict) else [])]:
            if isinstance(overrides, dict) and old in overrides:
                overrides[new] = overrides.pop(old)
    return spec
