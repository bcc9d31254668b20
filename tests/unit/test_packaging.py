"""What a package on a shared cluster and on PyPI owes its users: no private APIs of other libraries, the license
and citation files the metadata names, one version (`groklab --version` prints it), type information, and stored
files that the user's umask decides who can read."""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import torch
import yaml

import groklab
from groklab.files import atomic_write

PACKAGE = Path(groklab.__file__).parent
ROOT = PACKAGE.parents[1]
PUBLIC_TORCH_PRIVATES = {"_foreach_add", "_foreach_add_", "_foreach_mul_", "_foreach_lerp_", "_foreach_addcmul_",
                         "_foreach_addcdiv_", "_foreach_sqrt", "_foreach_div_", "_foreach_sub_", "_foreach_maximum_"}  # fmt: skip
"""torch's multi-tensor kernels: what torch.optim's foreach implementations call, the only private names used."""


def test_nothing_imports_or_reads_a_private_name_of_another_library() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', 0)}"
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and not node.module.startswith(("groklab", "__future__"))
            ):
                if any(part.startswith("_") for part in node.module.split(".")) or any(
                    alias.name.startswith("_") for alias in node.names
                ):
                    offenders.append(where)
            elif isinstance(node, ast.Import):
                offenders += [where for a in node.names if any(p.startswith("_") for p in a.name.split("."))]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("torch", "np", "typer", "click", "pd", "plt"):
                    if node.attr not in PUBLIC_TORCH_PRIVATES:
                        offenders.append(f"{where} {owner.id}.{node.attr}")
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) > 1:
                name = node.args[1]
                if isinstance(name, ast.Constant) and str(name.value).startswith("_"):
                    offenders.append(f"{where} getattr {name.value}")
    assert offenders == []


def test_metadata_license_citation_version_and_types() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and "MIT License" in (ROOT / "LICENSE").read_text()
    assert project["authors"] and project["classifiers"] and project["keywords"]
    version = metadata.version("groklab")
    assert groklab.__version__ == version == project["version"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == version and citation["license"] == "MIT" and citation["cff-version"] == "1.2.0"
    assert (PACKAGE / "py.typed").is_file()
    shown = subprocess.run([sys.executable, "-m", "groklab", "--version"], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == f"groklab {version}"


def test_stored_files_get_the_mode_the_umask_allows(tmp_path: Path) -> None:
    modes = {}
    for umask in (0o022, 0o077, 0o002):
        script = (
            f"import os; os.umask({umask}); from pathlib import Path; import torch\n"
            "from groklab.engine.checkpoint import Checkpoint, save\nfrom groklab.files import atomic_write\n"
            f"atomic_write(Path({str(tmp_path)!r}) / 'a{umask}.txt', lambda p: p.write_text('x'))\n"
            f"save(Path({str(tmp_path)!r}) / 'c{umask}.pt', Checkpoint(['r'], 0, '', {{'w': torch.ones(2)}}))\n"
        )
        subprocess.run([sys.executable, "-c", script], check=True)
        modes[umask] = {stat.S_IMODE(os.stat(tmp_path / f"{kind}{umask}.{ext}").st_mode) for kind, ext in
                        (("a", "txt"), ("c", "pt"))}  # fmt: skip
    assert modes == {0o022: {0o644}, 0o077: {0o600}, 0o002: {0o664}}
    # and this process's own writes follow its umask
    atomic_write(tmp_path / "here.pt", lambda p: torch.save({}, p))
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "here.pt").st_mode) == 0o666 & ~mask


def test_import_groklab_is_light_and_every_public_name_resolves() -> None:
    """`import groklab` imports no public name until it is used (torch and pandas take seconds): each name of
    __all__ then resolves to the object its home module defines."""
    script = (
        "import sys, groklab\n"
        "assert 'torch' not in sys.modules and 'pandas' not in sys.modules, 'import groklab imported torch'\n"
        "from groklab import Stack, load\n"
        "import groklab.engine.stack, groklab.store\n"
        "assert Stack is groklab.engine.stack.Stack and load is groklab.store.load\n"
        "print(sorted(n for n in groklab.__all__ if getattr(groklab, n) is None))\n"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "[]"
    assert sorted(dir(groklab)) == sorted(groklab.__all__)
