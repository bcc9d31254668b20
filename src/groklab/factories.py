"""Code a spec names: `package.module:function` (your own model's factory), resolved to the function, with the file
it came from and that file's SHA-256, so that a stored result says what produced it (meta.json, the report).

A spec that names code runs that code when groklab reads it, as `python script.py` runs a script: treat a spec from
elsewhere as you would a script. The module is imported as Python imports any module, with two more folders to look
in after the installed packages: the current directory and the folder of the spec file. A function handed over in
Python (`groklab.ModuleModel(factory=make_model)`) is kept by its name in this process, so that a function written
in a notebook or a script trains in that process; worker processes and Dask workers import it by name, and a
function they cannot import (one defined in a notebook) is refused in one line before anything is written.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from groklab.errors import SpecError
from groklab.plugins import described

PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
"""What a factory is written as: an importable module, a colon, a (possibly dotted) name in it."""

HANDED: dict[str, Callable[..., Any]] = {}
"""Functions handed over as objects in this process, by their `module:qualname`."""

FOLDERS: list[str] = []
"""Spec folders to look in for a factory's module, besides the installed packages and the current directory."""


def name_of(function: Callable[..., Any], key: str = "model.factory") -> str:
    """The `module:qualname` of a function handed over as an object; kept, so it resolves in this process."""
    named = inspect.isfunction(function) or inspect.isclass(function)
    if not named or "<" in function.__qualname__:  # not a function or class, a lambda, or one defined in a function
        raise SpecError(
            f"{key}: {function!r} has no importable name; allowed: a function or class defined at the top of a module"
        )
    path = f"{function.__module__}:{function.__qualname__}"
    HANDED[path] = function
    return path


def as_path(name: str) -> str:
    """A dotted name as `module:attribute`: 'torch.optim.NAdam' -> 'torch.optim:NAdam' (a path is kept as it is).

    >>> as_path("torch.optim.NAdam"), as_path("mylab.optim:Lion")
    ('torch.optim:NAdam', 'mylab.optim:Lion')
    """
    if ":" in name:
        return name
    module, _, attribute = name.rpartition(".")
    return f"{module}:{attribute}"


def named(factory: Any, key: str) -> str:
    """What a spec keeps of a factory: its path as written, or the name of a function handed over (kept in this
    process); ValueError naming `key` for anything else (a config validator's error)."""
    if isinstance(factory, str):
        return factory
    if not callable(factory):
        raise ValueError(f"{key}: {factory!r}; allowed: 'package.module:function' (or the function)")
    return name_of(factory, key)


def add_folder(folder: str | Path) -> None:
    """Look for factories' modules in `folder` too (the folder of a spec file that is read)."""
    folder = str(Path(folder).resolve())
    if folder not in FOLDERS:
        FOLDERS.append(folder)


def resolve(path: str, key: str = "model.factory") -> Callable[..., Any]:
    """The function `path` names; SpecError naming `key` when it is malformed, does not import or is not callable."""
    if path in HANDED:
        return HANDED[path]
    if not PATH.fullmatch(path):
        raise SpecError(f"{key}: {path!r}; allowed: 'package.module:function'")
    module_name, _, attribute = path.partition(":")
    for folder in [str(Path.cwd()), *FOLDERS]:
        if folder not in sys.path:
            sys.path.append(folder)  # after the installed packages, as a script's folder comes before them
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as error:  # the user's module: whatever it raises is theirs to see, in one line
        raise SpecError(
            f"{key}: {path} does not import ({described(error)}); modules are looked up in the installed packages, "
            "the current directory and the spec's folder"
        ) from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise SpecError(f"{key}: {path}: module {module_name} has no {attribute!r}")
        found = getattr(found, part)
    if not callable(found):
        raise SpecError(f"{key}: {path} is a {type(found).__name__}; allowed: a function that returns the object")
    return found


def importable_elsewhere(path: str) -> bool:
    """Whether another process can import `path`: False for a function defined in a notebook or an interpreter
    session (a `__main__` without a file)."""
    module = sys.modules.get(path.partition(":")[0])
    if path not in HANDED or module is None:
        return True
    try:
        inspect.getfile(module)  # a module with no file (a notebook's __main__) raises TypeError
    except TypeError:
        return False
    return True


def provenance(path: str) -> dict[str, Any]:
    """What a factory is, for meta.json: its name, its source file and that file's SHA-256 (None where it has no
    file: a function defined in a notebook)."""
    function = resolve(path)
    try:
        file = inspect.getsourcefile(function)
    except TypeError:  # a builtin or a C extension: no source file
        file = None
    digest = hashlib.sha256(Path(file).read_bytes()).hexdigest() if file and Path(file).is_file() else None
    return {"factory": path, "file": str(Path(file).resolve()) if file else None, "sha256": digest}
