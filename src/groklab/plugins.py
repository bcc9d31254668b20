"""Plugins: installed packages that add measures, claims checks and figures to groklab, with nothing edited in it.

A package names one module in the entry-point group `groklab.plugins` (in its pyproject.toml):

    [project.entry-points."groklab.plugins"]
    mylab = "mylab.groklab_plugin"

groklab imports each such module once, before it trains a spec, lists the measures, recomputes one, or draws figures
or a report; the module registers what it adds with the public decorators `groklab.measure`, `groklab.check` and
`groklab.figure` (docs/extending.md). Installing a plugin runs its code whenever groklab starts one of those, as
installing any package does. A plugin that fails to import is one warning line naming it, and is left out: the
built-ins and the other plugins work on. `groklab measures` and the report say which package each addition
comes from.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from importlib import metadata

GROUP = "groklab.plugins"
"""The entry-point group a plugin package declares its module in."""


class PluginWarning(UserWarning):
    """A plugin that could not be imported (left out)."""


@functools.cache
def load_plugins() -> dict[str, str]:
    """Import every plugin module once per process; {entry point name: the package that provides it} of those that
    imported. One PluginWarning per plugin that raised on import."""
    loaded = {}
    for entry in sorted(metadata.entry_points(group=GROUP), key=lambda entry: entry.name):
        package = entry.dist.name if entry.dist is not None else entry.value.split(".")[0]
        try:
            importlib.import_module(entry.value.split(":")[0])
        except Exception as error:  # a plugin's bug, whatever it is, must not take groklab down with it
            warnings.warn(
                f"plugin {entry.name} ({package}: {entry.value}) cannot be imported ({described(error)}); what it adds "
                "is not available",
                PluginWarning,
                2,
            )
            continue
        loaded[entry.name] = package
    return loaded


def described(error: BaseException) -> str:
    """An exception a plugin raised, in one line: its type and the start of its message.

    >>> described(ValueError("no\\nway"))
    'ValueError: no way'
    """
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"


def package_of(module: str) -> str:
    """The installed package (distribution) a module belongs to: 'groklab' for the built-ins.

    >>> package_of("groklab.measures.fourier")
    'groklab'
    """
    top = module.split(".")[0]
    if top == "groklab":
        return "groklab"
    return _distributions().get(top, [top])[0]


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())
