"""What the sources report about an experiment, checked against what its stored runs measured.

A spec's `claims:` list says it (each claim: the source's words, the source, a check and its parameters);
the report reads the claims from the stored spec, so a copy of a built-in under another name keeps them.
The checks live in general.py (any experiment, phases_appear included), doshi.py (Doshi et al.'s pruning and
regularizers), liu.py (Liu et al.'s effective theory and phase diagram), thilak.py (Thilak et al.'s slingshots),
methods.py (methods compared variant by variant, e.g. Grokfast's steps to 95%), omnigrok.py (the initial
weight norm's control of grokking), varma.py (the critical training-set size, ungrokking, semi-grokking) and
grids.py (later at smaller training sets, a count that drops by generalization, double descent);
`docs/claims.md` lists them, generated from their docstrings and conditions.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any

from groklab.config import Experiment, SpecError
from groklab.expectations import doshi, general, grids, liu, methods, omnigrok, thilak, varma  # noqa: F401  (registers the checks)
from groklab.expectations.base import CHECKS, Check
from groklab.plugins import described, load_plugins
from groklab.store.reader import ExperimentResult

__all__ = ["CHECKS", "Check", "Verdict", "check", "claims_reference", "validate_claims"]


@dataclass(frozen=True)
class Verdict:
    """One claim checked: its sentence (the source's words and the checked condition), what was measured, met."""

    claim: str
    source: str
    measured: str
    met: bool | None


def validate_claims(experiment: Experiment) -> None:
    """Raise SpecError for a claim whose check is unknown or whose parameters do not fit it (before any run)."""
    for i, claim in enumerate(experiment.claims):
        if claim.check not in CHECKS:
            raise SpecError(f"claims.{i}.check: unknown check {claim.check!r}; allowed: {', '.join(sorted(CHECKS))}")
        CHECKS[claim.check].validate(claim.params, f"claims.{i}")


def check(result: ExperimentResult) -> list[Verdict]:
    """Every claim of the stored spec, with what was measured and whether it was met. A claim that cannot be
    checked (a hand-edited stored spec: an unknown check, parameters that do not fit it) says why on the page,
    with met None, instead of failing the page."""
    load_plugins()  # their checks join CHECKS
    verdicts = []
    for i, claim in enumerate(result.spec.get("claims") or []):
        if not isinstance(claim, dict) or not all(isinstance(claim.get(k), str) for k in ("claim", "source", "check")):
            verdicts.append(Verdict(f"claims.{i}", "?", "cannot be checked: not a claim (claim, source, check)", None))
            continue
        params = claim.get("params") or {}
        try:
            if claim["check"] not in CHECKS:
                raise SpecError(f"unknown check {claim['check']!r}")
            registered = CHECKS[claim["check"]]
            if not isinstance(params, dict):
                raise SpecError(f"claims.{i}.params: not a mapping")
            registered.validate(params, f"claims.{i}")
        except SpecError as error:
            verdicts.append(Verdict(claim["claim"], claim["source"], f"cannot be checked: {error}", None))
            continue
        sentence = f"{claim['claim']} (checked: {registered.describe(params)})"
        if registered.package != "groklab":
            sentence = f"{sentence[:-1]}, by {registered.package})"
            try:
                measured, met = registered.fn(result, **params)
            except Exception as error:  # a plugin's bug: said on the page, the other claims are checked
                verdicts.append(Verdict(sentence, claim["source"], f"cannot be checked: {described(error)}", None))
                continue
            verdicts.append(Verdict(sentence, claim["source"], measured, None if met is None else bool(met)))
            continue
        measured, met = registered.fn(result, **params)
        verdicts.append(Verdict(sentence, claim["source"], measured, None if met is None else bool(met)))
    return verdicts


def claims_reference() -> str:
    """Markdown: every check, its parameters and the condition it tests (docs/claims.md)."""
    lines = ["| check | parameters | condition checked | what it tests |", "|---|---|---|---|"]
    for name, registered in sorted(CHECKS.items()):
        params = ", ".join(_param(n, d) for n, d in registered.params.items())
        doc = " ".join((registered.fn.__doc__ or "").split())
        condition = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", registered.condition).replace("|", "\\|")
        lines.append(f"| `{name}` | {params or '-'} | {condition} | {doc} |")
    return "\n".join(lines)


def _param(name: str, default: Any) -> str:
    return f"`{name}`" if default is inspect.Parameter.empty else f"`{name}` (default {default})"
