"""The measure registry: every measure's name, formula, source, when it runs, and to which runs it applies."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from groklab.config import RunConfig, SpecError
from groklab.plugins import package_of

When = Literal["eval", "representation", "update", "final"]


@dataclass(frozen=True)
class Measure:
    """One registered measure.

    eval: fn(probe) -> {column: (run,) scalar tensor or (run, m) vector tensor}, at evaluated steps
        (every measures.every-th evaluation); scalars become metrics columns, vectors stored series.
    representation: the same signature, at measures.representations.steps only.
    update: fn(probe) -> {name: (run,) tensor}, right after the step that follows each evaluation (probe.update_norm
        is what that step changed); the value goes into that evaluation's row, under the measure's name.
    final: fn(probe) -> [{name: array or float}] per run, once after training (probe of one run).
    """

    name: str
    summary: str
    formula: str
    source: str
    when: When
    applies: Callable[[RunConfig], bool]
    default: bool | Callable[[RunConfig], bool]
    fn: Callable[..., Any]
    requires: tuple[str, str] | None = None
    """(module, extra) of an optional package the measure needs: such a measure is chosen by name only, never by
    'all'."""
    package: str = "groklab"
    """The installed package that registered it (a plugin's, or groklab for the built-ins)."""
    needs: tuple[str, ...] = ()
    """Structure it reads (NEEDS): a user's module says where it is with these model keys, or the measure is left
    out (refused when asked for by name)."""


NEEDS = {
    "embedding": "the operands' token embedding",
    "neurons": "the first hidden layer's neurons (their incoming and outgoing weights)",
}
"""What a measure may need to know of a network's structure, by the model key that says where it is: the built-in
models know; a user's module (model.name module) is told in its spec."""


def missing(measure: Measure, config: RunConfig) -> list[str]:
    """The model keys `measure` needs that the run's model leaves unset (a user's module without them)."""
    return [key for key in measure.needs if getattr(config.model, key, "built in") is None]


MEASURES: dict[str, Measure] = {}


def register(
    name: str,
    summary: str,
    formula: str,
    source: str,
    when: When = "eval",
    applies: Callable[[RunConfig], bool] = lambda config: True,
    default: bool | Callable[[RunConfig], bool] = True,
    requires: tuple[str, str] | None = None,
    needs: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: add a measure function to MEASURES under `name`; `requires` = (module, extra) it needs, `needs` the
    structure it reads (NEEDS)."""

    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        package = package_of(fn.__module__)
        if name in MEASURES and MEASURES[name].package != package:
            raise ValueError(f"measure {name!r} of {package}: {MEASURES[name].package} has a measure of that name")
        MEASURES[name] = Measure(name, summary, formula, source, when, applies, default, fn, requires, package, needs)
        return fn

    return add


def measure(
    name: str,
    summary: str,
    formula: str,
    source: str = "",
    when: When = "eval",
    applies: Callable[[RunConfig], bool] = lambda config: True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator (public: `groklab.measure`): add a measure of your own. `fn(probe)` returns {column: (run,)
    scalar tensor or (run, m) vector tensor} from a Probe (measures/probe.py: the stack's parameters, data,
    model and hooked activations), at the evaluations (`when="eval"`), after each evaluation's update
    ("update"), or `fn(probe) -> [{name: value}]` per run once after training ("final"). Chosen by its name in
    `measures.names` (and by `all` where it `applies`), never by default: adding one changes no other run.
    A name already registered by another package is an error. docs/extending.md has a worked example."""
    return register(name, summary, formula, source, when, applies, default=False)


def listing() -> dict[str, dict[str, str]]:
    """Every measure as `groklab measures` shows it: name -> when, default (default, auto: by the run, optional),
    summary, formula, source, applies to. The CLI reads it from measures/listing.json, written by
    write_listing(), so that it need not import torch to print it; a test keeps the two equal."""
    return {
        m.name: {
            "when": m.when,
            "default": "auto" if callable(m.default) else "default" if m.default else "optional",
            "summary": m.summary,
            "formula": m.formula,
            "source": m.source,
            "applies": (m.applies.__doc__ or "every run").strip(),
            "package": m.package,
        }
        for m in sorted(MEASURES.values(), key=lambda m: m.name)
    }


def write_listing() -> Path:
    """Write measures/listing.json from the registry (after adding or changing a measure)."""
    path = Path(__file__).with_name("listing.json")
    path.write_text(json.dumps(listing(), indent=1) + "\n")
    return path


def selected(config: RunConfig) -> list[Measure]:
    """The measures a run computes, from measures.names; raises SpecError for unknown or inapplicable names."""
    names = config.measures.names
    modulus = getattr(config.task, "modulus", None)
    frequencies = config.measures.restricted_excluded.key_frequencies
    if frequencies and modulus is not None and max(frequencies) > modulus // 2:
        raise SpecError(f"measures.restricted_excluded.key_frequencies: {frequencies} must be 1..{modulus // 2} (p/2)")
    if names == "none":
        return []
    if names in ("default", "all"):
        chosen = [m for m in MEASURES.values() if m.applies(config) and m.requires is None and not missing(m, config)]
        return [m for m in chosen if names == "all" or _default(m, config)]
    chosen = selected(config.model_copy(update={"measures": config.measures.model_copy(update={"names": "default"})}))
    chosen = chosen if names[:1] == ["default"] else []
    for name in names[1:] if names[:1] == ["default"] else names:
        if any(m.name == name for m in chosen):
            continue
        if name in ("default", "all", "none"):
            raise SpecError(f"measures.names: {name} in a list; allowed: default first ([default, NAME, ...]), or "
                            "a list of measure names")  # fmt: skip
        if name not in MEASURES:
            raise SpecError(f"measures.names: unknown measure {name!r}; allowed: {', '.join(sorted(MEASURES))}")
        measure = MEASURES[name]
        if not measure.applies(config):
            raise SpecError(f"measures.names: {name} does not apply to this task/model ({measure.summary})")
        if (unset := missing(measure, config)) and config.model.name != "module":
            what = "; ".join(NEEDS[key] for key in unset)
            raise SpecError(f"measures.names: {name} reads {what}, which model {config.model.name} has not")
        if unset:
            what = "; ".join(f"model.{key}: {NEEDS[key]}" for key in unset)
            raise SpecError(f"measures.names: {name} reads the network's structure; your module needs {what}")
        if measure.requires is not None and importlib.util.find_spec(measure.requires[0]) is None:
            module, extra = measure.requires
            raise SpecError(f"measures.names: {name} needs {module}; install it with: pip install 'groklab[{extra}]'")
        chosen.append(measure)
    return chosen


def _default(measure: Measure, config: RunConfig) -> bool:
    return measure.default(config) if callable(measure.default) else measure.default
